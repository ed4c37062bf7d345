"""longlora-kit: learn LongLoRA (PI + S2-Attn + LoRA+) by running it.

``from longlora_kit import ...`` is all a notebook needs; each stage has one module:

- ``profile``  the run-budget switch (``LONGLORA_KIT_PROFILE``: smoke / workshop / full)
- ``utils``    device choice, seeding, notebook set-up, environment report
- ``models``   tiny Llamas built from ``LlamaConfig``
- ``rope``     RoPE for HF's default/linear/dynamic/yarn/llama3, ``KitRotaryEmbedding``, ``extend_config`` (PI & co.)
- ``patterns`` attention patterns as mask functions; ``s2attn`` S2-Attn, the readable reference and the
  entry point (fast backends one level down in ``kernels``); ``s2attn.register()`` adds ``"s2_attn"`` /
  ``"s2_attn_paper"`` to transformers (explicit: importing the package registers nothing)
- ``lora``     LoRA / LoRA+ (``apply``, ``parameter_report``, atomic ``save``, ``load``, ``merge``);
  ``architectures`` published Llama configs, built config-only on the meta device
- ``data``     synthetic long-range corpus, stdlib text, passkey prompts, the BPE tokenizer, packing
- ``config``   ``TrainConfig`` / ``TrainResult`` and ``validate`` (below every module that uses them)
- ``recipes``  ``TrainConfig`` fields per preset, stage and profile (``pretrain_config``, ``extension_config``)
- ``build``    a ``TrainConfig`` → the model it trains (weights, PI, attention, LoRA+) and the data blocks
- ``train``    chunked loss + the accelerate loop + ``train()`` (pre-training and LongLoRA extension)
- ``runs``     the run folder: atomic writes, checkpoints and exact resume, fingerprint, claim (lock, --overwrite)
- ``evaluate`` sliding-window perplexity, passkey accuracy (always full attention)
"""

from .models import build_model, count_parameters, tiny_config
from .profile import current_profile, pick
from .rope import KitRotaryEmbedding, extend_config
from .s2attn import s2_attention
from .utils import environment_report, format_report, get_device, seed_everything, setup_notebook

__version__ = "0.1.0"

__all__ = [
    "KitRotaryEmbedding",
    "build_model",
    "count_parameters",
    "current_profile",
    "environment_report",
    "extend_config",
    "format_report",
    "get_device",
    "pick",
    "s2_attention",
    "seed_everything",
    "setup_notebook",
    "tiny_config",
]
