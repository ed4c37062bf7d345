"""Recipes: the ``TrainConfig`` fields a preset trains with, per stage and run budget (profile).

A preset is a name -> settings lookup; each recipe returns ``TrainConfig`` fields for the active
profile (smoke / workshop / full). The tiny preset's two stages:

>>> pre, ext = recipe("tiny", "pretrain", "workshop"), recipe("tiny", "extend", "workshop")
>>> pre["seq_len"], ext["seq_len"], ext["rope_method"], ext["method"], ext["attention"]
(128, 512, 'yarn', 'lora+', 's2_attn')
"""

from __future__ import annotations

from .config import TrainConfig
from .profile import current_profile, pick


def _tiny_recipe(stage: str, profile: str | None = None) -> dict:
    # Workshop/full: tiny_config's 4 layers, pre-trained at 128 tokens on keys mentioned at most 128
    # tokens apart, then extended to 512 on keys up to 512 apart. Measured (issue #6): with 4 layers the
    # copy forms by step ~800; 2 layers still sat near 1 nat per digit at step 1000.
    model = pick({
        "smoke": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=64),
        "workshop": dict(max_position_embeddings=128),
        "full": dict(max_position_embeddings=128),
    }, profile)
    short = model["max_position_embeddings"]
    if stage == "pretrain":
        return dict(
            model_overrides=model, seq_len=short, max_distance=short, lr=3e-3,
            warmup_steps=pick({"smoke": 5, "workshop": 30, "full": 50}, profile), lr_schedule="constant",
            max_steps=pick({"smoke": 40, "workshop": 1200, "full": 3000}, profile),
            batch_size=pick({"smoke": 4, "workshop": 16, "full": 16}, profile),
            n_documents=pick({"smoke": 40, "workshop": 600, "full": 2000}, profile),
        )
    if stage == "extend":  # 4x the pre-training length, the paper's hyper-parameters otherwise
        return dict(
            # YaRN, not the paper's linear PI: with head_dim 32 a 4x linear squeeze of the fastest
            # frequencies destroys the tiny model's copy, and 600 LoRA+ steps did not bring it back; YaRN
            # keeps them (measured, issue #6; notebook 04 section 3). The hub presets keep linear PI.
            seq_len=4 * short, target_length=4 * short, max_distance=4 * short, rope_method="yarn", method="lora+",
            attention="s2_attn", lr=2e-3,
            warmup_steps=pick({"smoke": 2, "workshop": 10, "full": 20}, profile), lr_schedule="constant",
            max_steps=pick({"smoke": 10, "workshop": 200, "full": 1000}, profile),
            batch_size=pick({"smoke": 1, "workshop": 4, "full": 4}, profile),
            n_documents=pick({"smoke": 40, "workshop": 600, "full": 2000}, profile),
        )
    raise ValueError(f"stage={stage!r} is not a training stage; use 'pretrain' or 'extend'")


RECIPES = {"tiny": _tiny_recipe}


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
    ``method="full", attention="sdpa"`` for the full-attention, full fine-tuning baseline)."""
    fields = {"out_dir": out_dir, "base_model": base_model, **recipe(preset, "extend", profile), **overrides}
    if preset not in RECIPES:  # a hub model (presets.py) brings its own tokenizer, saved beside its weights
        fields.setdefault("tokenizer", base_model)
    return TrainConfig(**fields)


__all__ = ["RECIPES", "extension_config", "pretrain_config", "recipe"]
