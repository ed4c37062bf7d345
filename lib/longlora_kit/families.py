r"""What the kit knows about each decoder family of transformers: one table, read by S2-Attn and LoRA+.

LongLoRA is model-agnostic in principle: S2-Attn only changes *which keys a query sees*, LoRA+ only
*which weights train*. In practice every family names its layers differently and hands the attention
function different extras, so the knowledge lives here, once:

==============  =============================  =========================================================
family          LoRA targets                   passes to the attention function (besides q, k, v, mask)
==============  =============================  =========================================================
llama           q_proj k_proj v_proj o_proj    -            (Llama-2, Llama-3 rope, SmolLM2)
mistral         q_proj k_proj v_proj o_proj    sliding_window
qwen2           q_proj k_proj v_proj o_proj    sliding_window (None in full-attention layers)
qwen3           q_proj k_proj v_proj o_proj    sliding_window; q/k norms (Qwen3RMSNorm)
gemma           q_proj k_proj v_proj o_proj    -            (RMSNorm scales by 1 + weight)
gemma2          q_proj k_proj v_proj o_proj    sliding_window (every other layer), softcap
gemma3_text     q_proj k_proj v_proj o_proj    sliding_window (5 of 6 layers); q/k norms
phi3            qkv_proj o_proj (fused)        sliding_window (every layer)
olmo2           q_proj k_proj v_proj o_proj    -            q/k norms over all heads
gpt_neox        query_key_value dense (fused)  -            LayerNorms with bias, partial rotary, ``embed_in``
smollm3         q_proj k_proj v_proj o_proj    sliding_window; no RoPE in every 4th layer
==============  =============================  =========================================================

Every family also passes ``position_ids`` (RoPE is applied before the attention function, so S2 does
not need them) and most ``use_cache``. The attention function (``s2attn``) honours ``sliding_window``
and ``softcap`` and refuses anything else it does not know, so a new keyword is never silently
dropped. A family missing from the table is refused by name (:func:`family_of`).

Switching families is one line; the recipe does not change:

>>> config = tiny_config("qwen3")              # or "llama", "gemma2", "phi3", "gpt_neox", ...
>>> family_of(config).lora_targets
('q_proj', 'k_proj', 'v_proj', 'o_proj')
>>> family_of(tiny_config("gpt_neox")).lora_targets
('query_key_value', 'dense')
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: Keywords a family passes that S2-Attn can drop without changing the result, and why.
IGNORED_KWARGS = {
    "position_ids": "RoPE is applied before the attention function; S2 groups tokens by index",
    "use_cache": "S2 runs in training without a cache (a cache means more keys than queries: refused)",
    "cache_position": "as use_cache",
    "past_key_values": "as use_cache",
}
#: Keywords S2-Attn reads (``s2attn``): the layer's sliding window and Gemma-2's score soft-capping.
HONOURED_KWARGS = ("sliding_window", "softcap")


@dataclass(frozen=True)
class Family:
    """One decoder family: its transformers ``model_type``, LoRA targets and its tiny-config extras."""

    model_type: str
    lora_targets: tuple[str, ...]
    tiny: dict  # fields of a tiny random config beyond the shared ones (see tiny_config)


_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")

FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("llama", _QKVO, {}),
    Family("mistral", _QKVO, {"sliding_window": 32}),
    Family("qwen2", _QKVO, {"use_sliding_window": True, "sliding_window": 32, "max_window_layers": 1}),
    Family("qwen3", _QKVO, {}),
    Family("gemma", _QKVO, {"num_key_value_heads": 1}),  # Gemma-2B is multi-query
    Family("gemma2", _QKVO, {"sliding_window": 32}),
    Family("gemma3_text", _QKVO, {"sliding_window": 32, "sliding_window_pattern": 2}),
    Family("phi3", ("qkv_proj", "o_proj"), {"sliding_window": 32}),
    Family("olmo2", _QKVO, {}),
    Family("gpt_neox", ("query_key_value", "dense"), {"rotary_pct": 0.25}),
    Family("smollm3", _QKVO, {}),
)}
#: Friendly names accepted by :func:`tiny_config` besides the ``model_type`` itself.
ALIASES = {"gemma3": "gemma3_text", "neox": "gpt_neox", "pythia": "gpt_neox", "olmo-2": "olmo2"}


def _model_type(obj) -> str:
    config = getattr(obj, "config", obj)
    return getattr(config, "model_type", None) or type(obj).__name__


def family_of(model_or_config) -> Family:
    """The :class:`Family` of a model or config; a family the kit has not checked is refused by name.

    >>> family_of(tiny_config("phi3")).lora_targets
    ('qkv_proj', 'o_proj')
    >>> family_of(type("BertConfig", (), {"model_type": "bert"})())
    Traceback (most recent call last):
    ValueError: model family 'bert' is not supported by S2-Attn/LoRA+ in this kit; supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi3, olmo2, gpt_neox, smollm3 (add it to families.FAMILIES after checking what its attention passes)
    """
    model_type = _model_type(model_or_config)
    if model_type not in FAMILIES:
        raise ValueError(
            f"model family {model_type!r} is not supported by S2-Attn/LoRA+ in this kit; supported: "
            f"{', '.join(FAMILIES)} (add it to families.FAMILIES after checking what its attention passes)"
        )
    return FAMILIES[model_type]


def check_attention_backend(model) -> Family:
    """Refuse a model whose attention does not dispatch through ``AttentionInterface``.

    transformers accepts any registered ``attn_implementation`` name for any model, but a model class
    without ``_supports_attention_backend`` computes attention itself and never calls the registered
    function: training would silently run full attention. Returns the model's :class:`Family`.
    """
    family = family_of(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(type(base), "_supports_attention_backend", False):
        raise ValueError(
            f"{type(base).__name__} (model family {family.model_type!r}) does not dispatch attention through "
            "transformers' AttentionInterface, so attn_implementation='s2_attn' would be ignored; "
            "S2-Attn cannot run on it"
        )
    return family


def is_norm(module: nn.Module) -> bool:
    """Is ``module`` a normalisation layer? By type: torch's norms, or a class named ``*RMSNorm`` /
    ``*LayerNorm`` (LlamaRMSNorm, GemmaRMSNorm with its 1 + weight, Qwen3's q/k norms, ...).

    >>> is_norm(nn.LayerNorm(4)), is_norm(nn.Linear(4, 4))
    (True, False)
    """
    torch_norms = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)
    return isinstance(module, torch_norms) or type(module).__name__.endswith(("RMSNorm", "LayerNorm"))


def tiny_config(family: str, **overrides):
    """A tiny random config of ``family``: 2 layers, width 64, 4 query heads of 16, 2 key/value heads.

    Shared fields first, then the family's extras (sliding windows of 32 tokens where it has them),
    then ``overrides``. Token ids 0/1/2 for pad/bos/eos so they fit the 128-token vocabulary.

    >>> c = tiny_config("gemma2")
    >>> c.model_type, c.num_key_value_heads, c.sliding_window, c.attn_logit_softcapping
    ('gemma2', 2, 32, 50.0)
    """
    from transformers import AutoConfig

    model_type = ALIASES.get(family, family)
    if model_type not in FAMILIES:
        raise ValueError(f"family={family!r} is unknown; choose one of {', '.join(FAMILIES)}")
    fields = dict(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, use_cache=False,
    )
    fields.update(FAMILIES[model_type].tiny)
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)


def build(config, seed: int | None = 0):
    """A randomly initialised causal LM of any supported family, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).float()
