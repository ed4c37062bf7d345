"""Tiny Llamas built from ``LlamaConfig``: no downloads, seconds on a CPU."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM


def tiny_config(**overrides) -> LlamaConfig:
    """A Llama small enough for a laptop CPU (about 0.9M parameters with the defaults).

    Every keyword is a ``LlamaConfig`` field and overrides the default:

    >>> tiny_config(num_hidden_layers=2).num_hidden_layers
    2
    """
    fields = dict(
        vocab_size=512,               # tokens in the vocabulary
        hidden_size=128,              # model width d_model
        intermediate_size=344,        # MLP width (about 8/3 d_model, as Llama)
        num_hidden_layers=4,          # transformer blocks
        num_attention_heads=4,        # query heads (head_dim = 128 / 4 = 32)
        num_key_value_heads=4,        # key/value heads (fewer = grouped-query attention)
        max_position_embeddings=256,  # a default context; the kit's recipe sets its own (budgets.TINY_MODEL: 128, extended to 512)
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,    # Llama-2 keeps the LM head separate from the embeddings
        use_cache=False,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)


def build_model(config: LlamaConfig, seed: int | None = 0) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` (seeded for repeatability), in fp32."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def count_parameters(model) -> int:
    """Number of parameters, each tensor counted once (tied weights too)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
