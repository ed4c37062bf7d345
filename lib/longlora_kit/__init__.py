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
- ``budgets``  every per-profile number (sizes, steps, learning rates) in one table
- ``cli``      the ``longlora-kit`` command line (all argparse; one file per command group)
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it. Loaded on first use (PEP 562), so `import longlora_kit.cli` (and
# `longlora-kit --help`) does not pay for torch and transformers; `from longlora_kit import tiny_config`
# works as usual.
_HOMES = {
    "build_model": "models", "count_parameters": "models", "tiny_config": "models",
    "current_profile": "profile", "pick": "profile",
    "KitRotaryEmbedding": "rope", "extend_config": "rope",
    "s2_attention": "s2attn",
    "environment_report": "utils", "format_report": "utils", "get_device": "utils", "seed_everything": "utils",
    "setup_notebook": "utils",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = sorted(_HOMES)
