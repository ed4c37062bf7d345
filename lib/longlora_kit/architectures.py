"""Published Llama-family architectures, as configs only: count their parameters without weights.

A parameter budget needs shapes, not numbers. Building a model under ``torch.device("meta")``
creates every tensor with its shape and dtype but no storage, so a 70-billion-parameter Llama
"fits" in a few megabytes of Python objects and peft can wrap it like any other model.

For a Llama with vocabulary V, width d, MLP width f, L layers, H query heads and K key/value
heads of size h = d/H, the parameters are (untied head)::

    embeddings  V·d                      (the input table)
    head        V·d                      (0 when tied to the embeddings)
    attention   L·(2·d·H·h + 2·d·K·h)    (q, o: d×d; k, v: d×K·h)
    MLP         L·3·d·f                  (gate, up, down)
    norms       (2·L + 1)·d              (two RMSNorms per block + the final one)

Llama-2-7B (V=32000, d=4096, f=11008, L=32, H=K=32): 6,738,415,616 parameters.

>>> config = architecture_config("Llama-2-7B")
>>> model = meta_model(config)
>>> sum(p.numel() for p in model.parameters())
6738415616
>>> next(model.parameters()).device.type
'meta'

The numbers below are written from each model's published ``config.json`` (only the fields
that shape the parameter count and the position encoding); nothing is downloaded.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from .models import tiny_config

#: Architecture name -> LlamaConfig fields, from the published configs.
KNOWN_ARCHITECTURES: dict[str, dict] = {
    "SmolLM2-135M": dict(            # HuggingFaceTB/SmolLM2-135M
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,       # head_dim 64
        num_key_value_heads=3,       # grouped-query attention
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,    # the LM head reuses the embedding table
    ),
    "TinyLlama-1.1B": dict(          # TinyLlama/TinyLlama-1.1B (3T tokens)
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,      # head_dim 64
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "Llama-2-7B": dict(              # meta-llama/Llama-2-7b-hf, the paper's main model
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,      # head_dim 128
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "Llama-2-70B": dict(             # meta-llama/Llama-2-70b-hf
        vocab_size=32000,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,      # head_dim 128
        num_key_value_heads=8,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
}

#: The ladder the notebooks walk, smallest first ("tiny" is ``models.tiny_config()``).
LADDER: tuple[str, ...] = ("tiny", "SmolLM2-135M", "TinyLlama-1.1B", "Llama-2-7B", "Llama-2-70B")


def architecture_config(name: str, **overrides) -> LlamaConfig:
    """The ``LlamaConfig`` of a known architecture (``"tiny"`` or a key of ``KNOWN_ARCHITECTURES``).

    >>> architecture_config("TinyLlama-1.1B").num_key_value_heads
    4
    """
    if name == "tiny":
        return tiny_config(**overrides)
    if name not in KNOWN_ARCHITECTURES:
        known = ", ".join(("tiny", *KNOWN_ARCHITECTURES))
        raise ValueError(f"architecture {name!r} is not known; choose one of {known}")
    return LlamaConfig(**{**KNOWN_ARCHITECTURES[name], **overrides})


def meta_model(config: LlamaConfig | str) -> LlamaForCausalLM:
    """Build ``LlamaForCausalLM(config)`` on the meta device: every shape, no memory, no weights.

    Use it to count parameters (and to wrap with peft); it cannot run a forward pass.
    """
    if isinstance(config, str):
        config = architecture_config(config)
    with torch.device("meta"):
        return LlamaForCausalLM(config)
