"""From a :class:`~longlora_kit.config.TrainConfig` to what a run trains: the model and the data blocks.

:func:`build_for_training` applies the three LongLoRA ingredients in order:

1. **weights**: a fresh tiny Llama (``base_model=None``) or a ``save_pretrained`` folder;
2. **position interpolation**: ``rope.extend_config`` to ``target_length`` (``rope_method``);
3. **attention**: ``"s2"`` / ``"s2_paper"`` (transformers' ``"s2_attn"`` / ``"s2_attn_paper"``, registered by
   ``s2attn.register()``) or ``"full"`` (``"sdpa"``): ``config.attn_implementation`` maps the names;
4. **what trains**: ``lora.apply(model, method)`` (LoRA, LoRA+, or every parameter).

A base the kit cannot train is refused before anything is written, naming the fix:

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text('{"model_type": "gpt2"}')
>>> base_config(str(folder))
Traceback (most recent call last):
...
ValueError: base_model='...' is a 'gpt2' model; the kit trains Llama-architecture models (model_type 'llama'): pre-train one with `longlora-kit pretrain`
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import TrainConfig, attn_implementation, is_s2

_RECREATE = "re-create the model (`longlora-kit pretrain --overwrite`) or point --base at a good copy"


def base_config(path: str):
    """The base model's config, refusing what the kit cannot train with a message naming the fix."""
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(path)
    except Exception as err:  # a damaged config.json surfaces as OSError, ValueError or KeyError
        raise ValueError(f"base_model={path!r}: its config.json cannot be read ({err}); {_RECREATE}") from None
    if model_config.model_type != "llama":
        raise ValueError(f"base_model={path!r} is a {model_config.model_type!r} model; the kit trains Llama-"
                         "architecture models (model_type 'llama'): pre-train one with `longlora-kit pretrain`")
    return model_config


def build_for_training(config: TrainConfig, tokenizer):
    """The model, set up as ``config`` says: base weights, PI, attention, trainable parameters."""
    from transformers import LlamaForCausalLM

    from . import lora, rope, s2attn
    from .models import build_model, tiny_config

    if config.base_model is None:
        model_config = tiny_config(**{"vocab_size": len(tokenizer), **config.model_overrides})
    else:
        if not (Path(config.base_model) / "config.json").is_file():
            raise ValueError(f"base_model={config.base_model!r} is not a save_pretrained folder (no config.json); "
                             "pre-train one with `longlora-kit pretrain`")
        model_config = base_config(config.base_model)
    if len(tokenizer) > model_config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model_config.vocab_size}; use the tokenizer the model was trained with "
                         "(or a model with vocab_size >= the tokenizer's)")
    if config.target_length is not None and config.target_length != model_config.max_position_embeddings:
        model_config = rope.extend_config(model_config, config.target_length, method=config.rope_method)
    model_config.use_cache = False
    model_config.group_size_ratio = config.group_size_ratio
    if config.attention_pattern is not None:
        model_config.attention_pattern = config.attention_pattern
    if config.base_model is None:
        model = build_model(model_config, seed=config.seed)
    else:
        try:
            model = LlamaForCausalLM.from_pretrained(config.base_model, config=model_config, dtype=torch.float32)
        except Exception as err:  # garbage or truncated weights: safetensors/torch errors of several types
            raise ValueError(f"base_model={config.base_model!r}: its weights cannot be loaded ({err}); {_RECREATE}") from None
    if is_s2(config.attention):
        s2attn.register()  # "s2_attn" / "s2_attn_paper" for transformers' attn_implementation (idempotent)
    model.set_attn_implementation(attn_implementation(config.attention))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return lora.apply(model, config.method, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout)


def training_blocks(config: TrainConfig, tokenizer) -> torch.Tensor:
    """The packed training blocks, (n_blocks, seq_len)."""
    from . import data

    train_docs, _ = data.load_splits(config.data, tokenizer, config.n_documents, config.val_fraction,
                                     config.data_seed, config.max_distance)
    return data.pack(train_docs, config.seq_len, tokenizer.eos_token_id)



__all__ = ["base_config", "build_for_training", "training_blocks"]
