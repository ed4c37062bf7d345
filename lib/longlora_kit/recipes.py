"""Recipes: the ``TrainConfig`` fields a preset trains with, per stage and run budget (profile).

A preset is a name -> settings lookup; each recipe returns ``TrainConfig`` fields for the active
profile (smoke / workshop / full); the numbers live in :mod:`longlora_kit.budgets`. The tiny preset's
two stages:

>>> pre, ext = recipe("tiny", "pretrain", "workshop"), recipe("tiny", "extend", "workshop")
>>> pre["seq_len"], ext["seq_len"], ext["rope_method"], ext["method"], ext["attention"]
(128, 512, 'yarn', 'lora+', 's2')
"""

from __future__ import annotations

from .budgets import tiny_recipe
from .config import TrainConfig
from .profile import current_profile

RECIPES = {"tiny": tiny_recipe}


def recipe(preset: str, stage: str, profile: str | None = None) -> dict:
    """TrainConfig fields of ``preset`` for ``stage`` ('pretrain' / 'extend') under ``profile``."""
    from .presets import PRESET_NAMES, train_fields

    if preset not in RECIPES and stage == "extend" and preset in PRESET_NAMES:
        return train_fields(preset)  # the hub presets (presets.py): the paper's recipe, scaled to the model
    if preset not in RECIPES:
        raise ValueError(f"preset={preset!r} has no {stage} recipe; choose one of {', '.join(RECIPES)} "
                         f"(extend also takes {', '.join(p for p in PRESET_NAMES if p not in RECIPES)})")
    return RECIPES[preset](stage, current_profile(profile))


def pretrain_config(out_dir: str = "runs/pretrain", preset: str = "tiny", profile: str | None = None,
                    **overrides) -> TrainConfig:
    """Stage 1: pre-train a fresh tiny Llama at its short context (full fine-tuning, full attention)."""
    return TrainConfig(**{"out_dir": out_dir, **recipe(preset, "pretrain", profile), **overrides})


def extension_config(base_model: str = "runs/pretrain/model", out_dir: str = "runs/extend", preset: str = "tiny",
                     profile: str | None = None, **overrides) -> TrainConfig:
    """Stage 2: extend ``base_model`` to 4x its context: interpolated RoPE (YaRN for the tiny preset, linear PI
    for the hub presets) + S2-Attn + LoRA+ by default (override
    ``method="full", attention="full"`` for the full-attention, full fine-tuning baseline)."""
    fields = {"out_dir": out_dir, "base_model": base_model, **recipe(preset, "extend", profile), **overrides}
    if preset not in RECIPES:  # a hub model (presets.py) brings its own tokenizer, saved beside its weights
        fields.setdefault("tokenizer", base_model)
    return TrainConfig(**fields)


__all__ = ["RECIPES", "extension_config", "pretrain_config", "recipe"]
