"""Published architectures of every supported family, as configs only: count parameters without weights.

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
that shape the parameter count, the attention and the position encoding); nothing is downloaded.
An entry without ``model_type`` is a Llama; the others are built with ``AutoConfig.for_model``:

>>> meta_model("Pythia-1.4B").gpt_neox.embed_in.weight.shape  # GPT-NeoX, the official code's second family
torch.Size([50304, 2048])
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

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
    # One published model per further family (issue 17).
    "Mistral-7B": dict(              # mistralai/Mistral-7B-v0.1
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=32768, rope_theta=10000.0, sliding_window=4096, rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "Qwen2.5-0.5B": dict(            # Qwen/Qwen2.5-0.5B
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        max_position_embeddings=32768, rope_theta=1000000.0, use_sliding_window=False,
        sliding_window=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
    ),
    "Qwen3-0.6B": dict(              # Qwen/Qwen3-0.6B: q/k norms, head_dim 128 (not 1024/16)
        model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    ),
    "Gemma-2-2B": dict(              # google/gemma-2-2b: alternating sliding window, soft-capping
        model_type="gemma2", vocab_size=256000, hidden_size=2304, intermediate_size=9216,
        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        max_position_embeddings=8192, rope_theta=10000.0, sliding_window=4096, query_pre_attn_scalar=256,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    ),
    "Phi-3-mini-4k": dict(           # microsoft/Phi-3-mini-4k-instruct: fused qkv_proj, gate_up_proj
        model_type="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=4096, original_max_position_embeddings=4096, rope_theta=10000.0,
        sliding_window=2047, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=32000,
    ),
    "OLMo-2-1B": dict(               # allenai/OLMo-2-0425-1B: q/k norms, norms after each block
        model_type="olmo2", vocab_size=100352, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
        max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        pad_token_id=100277,
    ),
    "Pythia-1.4B": dict(             # EleutherAI/pythia-1.4b: the official LongLoRA code's GPT-NeoX default
        model_type="gpt_neox", vocab_size=50304, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=24, num_attention_heads=16, max_position_embeddings=2048, rotary_pct=0.25,
        rotary_emb_base=10000, use_parallel_residual=True, layer_norm_eps=1e-5, tie_word_embeddings=False,
    ),
    "SmolLM3-3B": dict(              # HuggingFaceTB/SmolLM3-3B: no RoPE in every 4th layer
        model_type="smollm3", vocab_size=128256, hidden_size=2048, intermediate_size=11008,
        num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
        max_position_embeddings=65536, rope_theta=5000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        pad_token_id=128004, bos_token_id=128000, eos_token_id=128012,
    ),
}

#: The ladder the notebooks walk, smallest first ("tiny" is ``models.tiny_config()``).
LADDER: tuple[str, ...] = ("tiny", "SmolLM2-135M", "TinyLlama-1.1B", "Llama-2-7B", "Llama-2-70B")


def architecture_config(name: str, **overrides) -> PretrainedConfig:
    """The config of a known architecture (``"tiny"`` or a key of ``KNOWN_ARCHITECTURES``).

    >>> architecture_config("TinyLlama-1.1B").num_key_value_heads
    4
    >>> type(architecture_config("Gemma-2-2B")).__name__
    'Gemma2Config'
    """
    if name == "tiny":
        return tiny_config(**overrides)
    if name not in KNOWN_ARCHITECTURES:
        known = ", ".join(("tiny", *KNOWN_ARCHITECTURES))
        raise ValueError(f"architecture {name!r} is not known; choose one of {known}")
    return config_from_fields({**KNOWN_ARCHITECTURES[name], **overrides})


def config_from_fields(fields: dict) -> PretrainedConfig:
    """A config from published ``config.json`` fields; ``model_type`` picks the class (default llama)."""
    fields = dict(fields)
    return AutoConfig.for_model(fields.pop("model_type", "llama"), **fields)


def meta_model(config: PretrainedConfig | str):
    """Build the causal LM of ``config`` on the meta device: every shape, no memory, no weights.

    Use it to count parameters (and to wrap with peft); it cannot run a forward pass.
    """
    if isinstance(config, str):
        config = architecture_config(config)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
