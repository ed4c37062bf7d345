r"""RoPE and how to stretch it: position interpolation (PI), NTK-aware, dynamic NTK, YaRN, Llama-3.

**Rotary position embedding (RoPE).** Split a head vector x ∈ R^d into d/2 pairs. Pair i is a
2-D vector that is rotated by the angle m·θ_i at position m, with one frequency per pair

    θ_i = b^{-2i/d},   i = 0 … d/2 − 1,   base b = ``rope_theta`` (10 000 for Llama-2, 500 000 for Llama-3)

    (x'_i, x'_{i+d/2}) = (x_i cos mθ_i − x_{i+d/2} sin mθ_i,  x_{i+d/2} cos mθ_i + x_i sin mθ_i)

(Hugging Face pairs dimension i with i + d/2, the "rotate half" layout.) Because rotations compose,
the score of a query at m and a key at n depends only on the distance m − n:
q_m·k_n = Re Σ_i h_i e^{i(m−n)θ_i} with h_i = q_i · conj(k_i) in complex notation.

**Why a longer context breaks it.** Pair i has wavelength λ_i = 2π/θ_i. A model trained at length L
has seen every angle of the pairs with λ_i < L, but the slow pairs (λ_i > L) have never completed
a turn: beyond L they show angles the model has never seen, and attention scores leave the range
they were fitted on.

**The fixes, each a per-pair change of θ_i** (s = extension factor = L'/L):

* *Position interpolation* (PI, ``linear``; LongLoRA uses it): f'(x, m) = f(x, m·L/L'), i.e. every
  θ_i → θ_i / s. All angles stay inside the trained range; neighbours get closer together.
* *NTK-aware*: raise the base instead, b' = b · s^{d/(d−2)}. The fastest pair (i = 0) is unchanged,
  the slowest (i = d/2 − 1) is divided by exactly s; in between the change is geometric.
* *Dynamic NTK* (``dynamic``): NTK-aware with a factor that grows with the current length l,
  b' = b · (s·l/L − (s − 1))^{d/(d−2)} for l > L, the plain RoPE up to L.
* *YaRN* (``yarn``, "NTK-by-parts" + temperature): pairs that turn many times in L (r_i = L/λ_i > β)
  keep θ_i, pairs that never turn (r_i < α) are interpolated θ_i/s, a linear ramp γ in between:
  θ'_i = (1 − γ_i)·θ_i/s + γ_i·θ_i. cos/sin are multiplied by 0.1·ln s + 1 (softmax temperature).
  Hugging Face runs the ramp over pair indices, from the pair that turns ``beta_fast`` = 32 times
  in L to the one that turns ``beta_slow`` = 1 time.
* *Llama-3* (``llama3``): the same idea with wavelength bands: λ_i < L/``high_freq_factor`` unchanged,
  λ_i > L/``low_freq_factor`` divided by s, smooth in between.

Everything here reads ``config.rope_parameters`` the way transformers 5.x does and returns exactly
what ``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS[rope_type](config, device, seq_len)``
(or ``LlamaRotaryEmbedding.compute_default_rope_parameters`` for ``default``) returns; the tests
check it over a grid. It is the kit's own code.

Example::

    >>> from longlora_kit import tiny_config
    >>> config = tiny_config()                      # head_dim 32, trained at 256 positions
    >>> long = extend_config(config, 1000)          # LongLoRA's rule: factor = ceil(1000 / 256) = 4
    >>> long.rope_parameters["factor"], long.max_position_embeddings
    (4.0, 1000)
    >>> freqs, scale = inv_freq(long)
    >>> round(float(freqs[0]), 4), scale            # θ_0 = 1 / 4
    (0.25, 1.0)
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
EXTEND_METHODS = ("linear", "dynamic", "yarn", "llama3", "ntk")

# Parameters each rope type cannot do without (``rope_theta`` is needed by all of them).
_REQUIRED = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "yarn": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
}


# ---------------------------------------------------------------------------------------------
# Reading the config
# ---------------------------------------------------------------------------------------------


def head_dim_of(config) -> int:
    """The per-head width d that RoPE rotates (``config.head_dim``, else hidden_size / heads); must be even."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim % 2:
        raise ValueError(
            f"head_dim={head_dim} is odd; RoPE rotates pairs of dimensions, so head_dim must be even "
            f"(e.g. {head_dim - 1} or {head_dim + 1})"
        )
    return head_dim


def rope_parameters_of(config) -> dict:
    """``config.rope_parameters`` checked and completed the way transformers 5.x completes it.

    Returns a new dict (the config is not touched) with ``rope_type`` (legacy ``type`` accepted),
    ``rope_theta`` and, for yarn/llama3, ``original_max_position_embeddings`` (defaults to
    ``config.max_position_embeddings``). Raises ``ValueError`` for an unknown type, a missing
    required parameter, a factor below 1 or a partial rotary factor.
    """
    params = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in params and getattr(config, "rope_theta", None) is not None:
        params["rope_theta"] = config.rope_theta
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(
            f"rope_parameters['rope_type']={rope_type!r} is not a rope type the kit knows; "
            f"choose one of {', '.join(ROPE_TYPES)}"
        )
    params["rope_type"] = rope_type
    for key in ("rope_theta", *_REQUIRED[rope_type]):
        if params.get(key) is None and not (key == "factor" and rope_type == "yarn"):
            raise ValueError(
                f"rope_parameters[{key!r}] is missing for rope_type={rope_type!r}; "
                f"add it, e.g. rope_parameters={{'rope_type': {rope_type!r}, {key!r}: ..., ...}}"
            )
    if rope_type in ("yarn", "llama3"):
        params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
    if rope_type == "yarn" and params.get("factor") is None:
        # transformers' rule (DeepSeek-V3 style configs): the factor is the ratio of the two lengths.
        params["factor"] = config.max_position_embeddings / params["original_max_position_embeddings"]
    factor = params.get("factor")
    if factor is not None and factor < 1:
        raise ValueError(
            f"rope_parameters['factor']={factor} is below 1; a factor s < 1 would shrink the context. "
            f"Use s = new_length / trained_length >= 1, or rope_type='default' for no scaling"
        )
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(
            f"rope_parameters['partial_rotary_factor']={params['partial_rotary_factor']}: the kit teaches "
            "Llama's full rotary embedding; remove partial_rotary_factor (or set it to 1.0)"
        )
    return params


# ---------------------------------------------------------------------------------------------
# Frequencies: θ_i and what each method does to them
# ---------------------------------------------------------------------------------------------


def rope_frequencies(head_dim: int, theta: float, device=None) -> torch.Tensor:
    """Plain RoPE frequencies θ_i = b^{-2i/d} for i = 0 … d/2 − 1, in float32.

    >>> rope_frequencies(8, 10_000.0)
    tensor([1.0000, 0.1000, 0.0100, 0.0010])
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim  # 2i/d, (d/2,)
    return 1.0 / (theta**exponents)  # (d/2,)


def wavelengths(frequencies: torch.Tensor) -> torch.Tensor:
    """λ_i = 2π / θ_i: how many positions pair i needs for one full turn."""
    return 2 * math.pi / frequencies


def ntk_aware_theta(theta: float, factor: float, head_dim: int) -> float:
    """NTK-aware base scaling b' = b · s^{d/(d−2)}: the slowest pair is slowed by exactly s.

    The fastest pair (θ_0 = 1) keeps its frequency, so short-range detail is extrapolated, not
    interpolated. transformers has no rope type for this; set ``rope_theta`` to the new base.

    >>> round(ntk_aware_theta(10_000.0, 4.0, 128))
    40890
    """
    if factor < 1:
        raise ValueError(f"factor={factor} is below 1; the NTK-aware factor is new_length / trained_length >= 1")
    if head_dim % 2 or head_dim <= 2:
        raise ValueError(f"head_dim={head_dim} must be even and greater than 2 for NTK-aware scaling")
    return theta * factor ** (head_dim / (head_dim - 2))


def dynamic_ntk_theta(theta: float, factor: float, head_dim: int, seq_len: int, trained_length: int) -> float:
    """Dynamic NTK base for the current length l: b · (s·l/L − (s − 1))^{d/(d−2)}, with l ≥ L.

    At l = L it is the plain base; it grows with the length actually in use.
    """
    length = max(seq_len, trained_length)
    return theta * (factor * length / trained_length - (factor - 1)) ** (head_dim / (head_dim - 2))


def yarn_attention_factor(factor: float, mscale: float | None = None, mscale_all_dim: float | None = None) -> float:
    """YaRN's temperature folded into cos/sin: 0.1·ln s + 1 (or the DeepSeek mscale ratio)."""

    def m(scale, coefficient=1.0):
        return 1.0 if scale <= 1 else 0.1 * coefficient * math.log(scale) + 1.0

    if mscale and mscale_all_dim:
        return float(m(factor, mscale) / m(factor, mscale_all_dim))
    return m(factor)


def yarn_ramp(head_dim: int, theta: float, trained_length: int, beta_fast: float = 32, beta_slow: float = 1,
              truncate: bool = True) -> torch.Tensor:
    """YaRN's per-pair blend γ_i ∈ [0, 1]: 1 = keep θ_i (extrapolate), 0 = θ_i / s (interpolate).

    Pair i turns r = L·θ_i/(2π) times in the trained length, so the (fractional) pair index that
    turns exactly r times is d·ln(L / (2π r)) / (2 ln b). The pair turning ``beta_fast`` times
    starts the ramp, the one turning ``beta_slow`` times ends it (rounded outwards when ``truncate``).
    """

    def dimension_of(rotations):
        return head_dim * math.log(trained_length / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    start, end = dimension_of(beta_fast), dimension_of(beta_slow)
    if truncate:
        start, end = math.floor(start), math.ceil(end)
    start, end = max(start, 0), min(end, head_dim - 1)
    if start == end:
        end += 0.001  # a zero-width ramp would divide by zero
    pairs = torch.arange(head_dim // 2, dtype=torch.float32)
    interpolate_share = ((pairs - start) / (end - start)).clamp(0, 1)  # 0 → keep, 1 → interpolate
    return 1 - interpolate_share


def llama3_blend(frequencies: torch.Tensor, trained_length: int, low_freq_factor: float,
                 high_freq_factor: float) -> torch.Tensor:
    """Llama-3's per-pair blend γ_i: 1 for λ_i < L/high (keep), 0 for λ_i > L/low (divide by s), linear in L/λ between."""
    turns = trained_length / wavelengths(frequencies)  # r_i = L / λ_i
    blend = (turns - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blend = torch.where(turns > high_freq_factor, torch.ones_like(blend), blend)
    return torch.where(turns < low_freq_factor, torch.zeros_like(blend), blend)


def inv_freq(config, seq_len: int | None = None, device=None) -> tuple[torch.Tensor, float]:
    """Frequencies θ'_i (the ``inv_freq`` buffer) and the cos/sin scale for ``config``'s rope type.

    Same meaning as transformers' ``ROPE_INIT_FUNCTIONS[rope_type](config, device, seq_len)``;
    ``seq_len`` matters for ``dynamic`` only (None = ``max_position_embeddings``).

    >>> from longlora_kit import tiny_config
    >>> freqs, scale = inv_freq(tiny_config(rope_parameters={"rope_type": "yarn", "factor": 4.0}))
    >>> freqs.shape, round(scale, 4)
    (torch.Size([16]), 1.1386)
    """
    params = rope_parameters_of(config)
    rope_type, theta = params["rope_type"], float(params["rope_theta"])
    head_dim = head_dim_of(config)

    if rope_type == "default":
        return rope_frequencies(head_dim, theta, device), 1.0
    factor = params["factor"]
    if rope_type == "linear":  # PI: every pair slowed by s
        return rope_frequencies(head_dim, theta, device) / factor, 1.0
    if rope_type == "dynamic":  # NTK-aware with the current length's factor
        trained_length = config.max_position_embeddings
        if isinstance(seq_len, torch.Tensor):
            # A length taken from position_ids: transformers then computes the new base in float32
            # (a 0-d tensor); doing the same keeps KitRotaryEmbedding bit-identical to it.
            length = seq_len.clamp(min=trained_length)
            new_theta = theta * (factor * length / trained_length - (factor - 1)) ** (head_dim / (head_dim - 2))
        else:
            length = trained_length if seq_len is None else seq_len
            new_theta = dynamic_ntk_theta(theta, factor, head_dim, length, trained_length)
        return rope_frequencies(head_dim, new_theta, device), 1.0

    frequencies = rope_frequencies(head_dim, theta, device)  # (d/2,)
    trained_length = params["original_max_position_embeddings"]
    if rope_type == "yarn":
        keep = yarn_ramp(head_dim, theta, trained_length, params.get("beta_fast") or 32,
                         params.get("beta_slow") or 1, params.get("truncate", True)).to(frequencies.device)
        attention_factor = params.get("attention_factor")
        if attention_factor is None:
            attention_factor = yarn_attention_factor(factor, params.get("mscale"), params.get("mscale_all_dim"))
    else:  # llama3
        keep = llama3_blend(frequencies, trained_length, params["low_freq_factor"], params["high_freq_factor"])
        attention_factor = 1.0
    # Blend of "interpolate" (θ/s) and "keep" (θ) per pair.
    return (1 - keep) * (frequencies / factor) + keep * frequencies, attention_factor


# ---------------------------------------------------------------------------------------------
# cos/sin tables and the rotation
# ---------------------------------------------------------------------------------------------


def cos_sin(frequencies: torch.Tensor, position_ids: torch.Tensor, attention_scaling: float = 1.0,
            dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(m·θ_i) and sin(m·θ_i) tables in the rotate-half layout, times ``attention_scaling``.

    ``position_ids`` (L,) or (B, L) → cos, sin of shape (L, d) or (B, L, d); pair i fills columns i
    and i + d/2. Computed in float32 (positions up to 10^5 need it), returned in ``dtype``.

    >>> cos, sin = cos_sin(rope_frequencies(8, 10_000.0), torch.arange(5))
    >>> cos.shape
    torch.Size([5, 8])
    """
    angles = position_ids[..., None].float() * frequencies.float().to(position_ids.device)  # (..., L, d/2)
    angles = torch.cat((angles, angles), dim=-1)  # (..., L, d)
    cos, sin = angles.cos() * attention_scaling, angles.sin() * attention_scaling
    dtype = dtype or torch.float32
    return cos.to(dtype), sin.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x_1, x_2) → (−x_2, x_1) on the two halves of the last dimension: a 90° turn of every pair."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate queries and keys: x·cos + rotate_half(x)·sin.

    q, k: (B, H, L, d) (k may have fewer heads); cos, sin: (B, L, d) from :class:`KitRotaryEmbedding`
    or (L, d) from :func:`cos_sin`. Returns the rotated (q, k).
    """
    for name, x in (("q", q), ("k", k)):
        if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but cos/sin have {tuple(cos.shape)}; expected "
                f"{name} as (B, H, L, d) with L={cos.shape[-2]} and d={cos.shape[-1]}"
            )
    if cos.dim() == 3:  # (B, L, d) → (B, 1, L, d): the same rotation for every head
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q_rotated = q * cos + rotate_half(q) * sin  # (B, H, L, d)
    k_rotated = k * cos + rotate_half(k) * sin  # (B, H_kv, L, d)
    return q_rotated, k_rotated


class KitRotaryEmbedding(nn.Module):
    """Drop-in replacement for ``model.model.rotary_emb`` built from this module.

    ``forward(x, position_ids) -> (cos, sin)``, each (B, L, d) in ``x.dtype``, like
    ``LlamaRotaryEmbedding``. For ``dynamic`` it recomputes the frequencies when a longer
    sequence arrives, keeps the longest seen, and returns to plain RoPE once a sequence fits in
    the trained length again (transformers' behaviour, so outputs match).

    >>> from longlora_kit import build_model, tiny_config
    >>> model = build_model(tiny_config())
    >>> model.model.rotary_emb = KitRotaryEmbedding(model.config)
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.rope_type = rope_parameters_of(config)["rope_type"]
        self.original_max_seq_len = config.max_position_embeddings
        self.max_seq_len_cached = config.max_position_embeddings
        frequencies, self.attention_scaling = inv_freq(config)
        self.inv_freq = nn.Buffer(frequencies, persistent=False)
        self.original_inv_freq = nn.Buffer(frequencies.clone(), persistent=False)

    def _update_dynamic(self, position_ids: torch.Tensor) -> None:
        seq_len = position_ids.max() + 1  # a 0-d tensor, as transformers passes it
        if seq_len > self.max_seq_len_cached:  # longer than ever: stretch further
            frequencies, self.attention_scaling = inv_freq(self.config, seq_len=seq_len, device=self.inv_freq.device)
            self.inv_freq = nn.Buffer(frequencies, persistent=False)
            self.max_seq_len_cached = int(seq_len)
        if seq_len < self.original_max_seq_len < self.max_seq_len_cached:  # short again: plain RoPE
            self.inv_freq = nn.Buffer(self.original_inv_freq.clone(), persistent=False)
            self.max_seq_len_cached = self.original_max_seq_len

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rope_type == "dynamic":
            self._update_dynamic(position_ids)
        return cos_sin(self.inv_freq.to(x.device), position_ids, self.attention_scaling, dtype=x.dtype)


# ---------------------------------------------------------------------------------------------
# Preparing a config for a longer context
# ---------------------------------------------------------------------------------------------


def extension_factor(target_length: int, original_length: int) -> float:
    """LongLoRA's factor: s = ceil(target / original), as a float (100 000 from 4096 → 25.0)."""
    return float(math.ceil(target_length / original_length))


def extend_config(config, target_length: int, method: str = "linear", **kw):
    """A NEW config prepared for ``target_length`` tokens; ``config`` itself is untouched.

    ``method``: ``"linear"`` (PI, LongLoRA's choice), ``"dynamic"``, ``"yarn"``, ``"llama3"`` or
    ``"ntk"`` (NTK-aware: plain RoPE with ``rope_theta`` raised to b·s^{d/(d−2)}). The factor is
    LongLoRA's ``ceil(target / original)`` unless ``factor=`` is given. Keywords: ``factor``,
    ``original_length`` (default: the config's ``max_position_embeddings``; needed if the config is
    already scaled), and for yarn ``beta_fast``, ``beta_slow``, ``attention_factor``, for llama3
    ``low_freq_factor`` (1.0), ``high_freq_factor`` (4.0).

    ``max_position_embeddings`` becomes ``target_length``, except for ``dynamic``: transformers reads
    ``max_position_embeddings`` as the *trained* length there, so it stays at the original length.

    **Pitfall:** the rotary embedding reads the config once, when the model is built. Editing
    ``model.config.rope_parameters`` of a built or loaded model changes nothing. Call this on the
    config *before* building (``LlamaForCausalLM(new_config)``) or loading
    (``from_pretrained(path, config=new_config)``), or replace ``model.model.rotary_emb`` with
    ``KitRotaryEmbedding(new_config)``.

    >>> from longlora_kit import tiny_config
    >>> new = extend_config(tiny_config(), 1024, method="ntk")
    >>> new.rope_parameters["rope_type"], round(new.rope_parameters["rope_theta"]), new.max_position_embeddings
    ('default', 43873, 1024)
    """
    if method not in EXTEND_METHODS:
        raise ValueError(f"method={method!r} is unknown; choose one of {', '.join(EXTEND_METHODS)}")
    params = rope_parameters_of(config)
    original_length = kw.pop("original_length", None)
    if original_length is None:
        if params["rope_type"] != "default":
            raise ValueError(
                f"config is already scaled (rope_type={params['rope_type']!r}); pass original_length= "
                "(the length it was pre-trained at) or start from the unscaled config"
            )
        original_length = config.max_position_embeddings
    if target_length < original_length:
        raise ValueError(
            f"target_length={target_length} is shorter than the original length {original_length}; "
            f"nothing to extend (use a target >= {original_length})"
        )
    factor = float(kw.pop("factor", extension_factor(target_length, original_length)))
    if not (math.isfinite(factor) and factor >= 1):  # written so that nan fails too (nan < 1 is False)
        raise ValueError(f"factor={factor} must be a finite number >= 1 (default ceil(target / original))")
    theta = float(params["rope_theta"])

    if method == "linear":
        rope = {"rope_type": "linear", "factor": factor, "rope_theta": theta}
    elif method == "dynamic":
        rope = {"rope_type": "dynamic", "factor": factor, "rope_theta": theta}
    elif method == "ntk":
        rope = {"rope_type": "default", "rope_theta": ntk_aware_theta(theta, factor, head_dim_of(config))}
    elif method == "yarn":
        rope = {"rope_type": "yarn", "factor": factor, "rope_theta": theta,
                "original_max_position_embeddings": original_length}
        rope.update({k: kw.pop(k) for k in ("beta_fast", "beta_slow", "attention_factor") if k in kw})
    else:  # llama3
        rope = {"rope_type": "llama3", "factor": factor, "rope_theta": theta,
                "original_max_position_embeddings": original_length,
                "low_freq_factor": float(kw.pop("low_freq_factor", 1.0)),
                "high_freq_factor": float(kw.pop("high_freq_factor", 4.0))}
    if kw:
        raise ValueError(f"unknown keyword(s) {sorted(kw)} for method={method!r}")

    new_config = copy.deepcopy(config)
    new_config.rope_parameters = rope
    new_config.max_position_embeddings = original_length if method == "dynamic" else target_length
    inv_freq(new_config)  # fail here, not when the model is built
    return new_config


# ---------------------------------------------------------------------------------------------
# Sizes for notebook 01 (one place; the notebook never hard-codes them)
# ---------------------------------------------------------------------------------------------


def notebook_sizes(profile: str | None = None) -> dict:
    """Sizes notebook 01 uses, chosen by the run-budget profile (``budgets.NOTEBOOK_01``)."""
    from .budgets import NOTEBOOK_01, at

    return at(NOTEBOOK_01, profile)
