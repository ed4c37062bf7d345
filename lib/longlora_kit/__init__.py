"""longlora-kit: learn LongLoRA (PI + S2-Attn + LoRA+) by running it.

``from longlora_kit import ...`` is all a notebook needs; each stage has one module:

- ``profile``  the run-budget switch (``LONGLORA_KIT_PROFILE``: smoke / workshop / full)
- ``utils``    device choice, seeding, notebook set-up, environment report
- ``models``   tiny Llamas built from ``LlamaConfig``
"""

from .models import build_model, count_parameters, tiny_config
from .profile import current_profile, pick
from .utils import environment_report, format_report, get_device, seed_everything, setup_notebook

__version__ = "0.1.0"

__all__ = [
    "build_model",
    "count_parameters",
    "current_profile",
    "environment_report",
    "format_report",
    "get_device",
    "pick",
    "seed_everything",
    "setup_notebook",
    "tiny_config",
]
