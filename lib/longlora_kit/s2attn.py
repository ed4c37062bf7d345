r"""S2-Attn (shifted sparse attention): the attention LongLoRA trains with, written as the paper does it.

Cut the L tokens into groups of G (``G = L/4`` by default), with ``s = G/2`` the shift. For head h,
query i and key j (positions 0..L-1), with ``r(p) = (p - s) mod L`` the position after rolling by -s:

    heads h <  H//2 (pattern 1):  i sees j  iff  i // G == j // G        and  j <= i
    heads h >= H//2 (pattern 2):  i sees j  iff  r(i) // G == r(j) // G  and  r(j) <= r(i)   ("paper")
                                                                       and  also j <= i   ("leak_free")

The split is the official code's slicing (``qkv[:, H//2:]`` is shifted), so it holds for any H, odd
too (9 query heads: heads 0-3 aligned, 4-8 shifted). Keys and values may have fewer heads (GQA,
``H_kv`` dividing H); one key/value head may serve heads of both halves (9 / 3). The two variants
differ only in the last shifted group ``[L-s, ..., L-1, 0, ..., s-1]``: in the paper's code tokens
``0..s-1`` come last in that group and so see the last s tokens of the text, their future (the
"leak" of the paper's Figure 3); ``leak_free`` forbids it.

A query sees at most G keys instead of up to L, so attention FLOPs fall from ``~L^2/2`` to
``~L G/2`` per head: a factor ``L/G = 4``. At inference the same weights run with full attention.

:func:`shifted_sparse_attention` is that definition as code (roll, reshape into groups, causal SDPA,
reshape back, roll back): the reference. :func:`s2_attention` is the entry point; its ``backend``
picks who computes it: ``"sdpa"`` (default, :mod:`.kernels.rows`: one gather, one SDPA, one scatter),
``"flash"`` (:mod:`.kernels.flash`), ``"flex"`` (:mod:`.kernels.flex`) or ``"reference"`` (the readable
function itself). All are tested equal to the reference. The masks of every pattern, the Table-6
ablations too, are in :mod:`longlora_kit.patterns`.

transformers: :func:`register` (call it once; it is idempotent) adds ``"s2_attn"`` (leak-free) and
``"s2_attn_paper"`` to ``AttentionInterface`` and ``AttentionMaskInterface``. In training mode they run
S2 with ``G = L * config.group_size_ratio``; in eval mode plain full causal SDPA. :func:`enable` does
that and switches a model, refusing a family the kit has not checked (``families.py`` lists eleven) or
a model that bypasses ``AttentionInterface``. What a layer passes is honoured (``sliding_window``: the
group and the window; ``softcap``: written-out attention) or refused by name, never dropped.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings

import torch
import torch.nn.functional as F

from .families import IGNORED_KWARGS, check_attention_backend, family_of
from .kernels import flash, flex, rows
from .patterns import GROUPED_PATTERNS, PATTERNS, VARIANTS, Grouping, dense_mask, pattern_mask
from .patterns import sliding_window as sliding_window_mask

BACKENDS = ("sdpa", "flash", "flex", "reference")
DEFAULT_GROUP_SIZE_RATIO = 0.25
IMPLEMENTATIONS = {"s2_attn": "leak_free", "s2_attn_paper": "paper"}


# --------------------------------------------------------------------------------------------------
# The readable S2-Attn: the reference every backend is tested against.


def shifted_sparse_attention(q, k, v, group_size: int, variant: str = "leak_free", *, pattern: str = "s2",
                             scaling: float | None = None, dropout: float = 0.0) -> torch.Tensor:
    """S2-Attn of ``q (B, H, L, D)`` over ``k, v (B, H_kv, L, D)``: roll, group, attend, ungroup, roll back.

    ``pattern``: ``"s2"`` shifts heads ``[H//2, H)``, ``"pattern2"`` all heads, ``"pattern1"`` none.
    Inputs are assumed valid (:func:`s2_attention` checks them).

    >>> q, k, v = torch.randn(1, 9, 16, 4), torch.randn(1, 3, 16, 4), torch.randn(1, 3, 16, 4)
    >>> out = shifted_sparse_attention(q, k, v, group_size=4)  # SmolLM2's 9 query / 3 kv heads
    >>> out.shape, out[:, :, :2].allclose(F.scaled_dot_product_attention(  # tokens 0, 1 see all their past
    ...     q[:, :, :2], k.repeat_interleave(3, 1)[:, :, :2], v.repeat_interleave(3, 1)[:, :, :2], is_causal=True))
    (torch.Size([1, 9, 16, 4]), True)
    """
    batch, num_heads, length, dim = q.shape
    n, half = length // group_size, group_size // 2
    first = Grouping(group_size, variant, pattern).first_shifted_head(num_heads)  # heads [first, H) shift

    def roll(x, by):  # roll the shifted heads along the tokens: (.., H, L, ..) -> same shape
        return torch.cat([x[:, :first], x[:, first:].roll(by, dims=2)], dim=1)

    def group(x):  # (B, H, L, D) -> (B * L/G, H, G, D): every group becomes a batch row
        x = x.reshape(x.shape[0], num_heads, n, group_size, x.shape[-1])  # (B, H, L/G, G, D)
        return x.transpose(1, 2).reshape(-1, num_heads, group_size, x.shape[-1])

    # 1. GQA: key/value head h // rep serves query head h (9 / 3: kv head 1 serves heads 3, 4, 5)
    rep = num_heads // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # (B, H, L, D)
    # 2. roll the shifted heads by -G/2: their groups [G/2, 3G/2), ... now start at 0
    q, k, v = (group(roll(x, -half)) for x in (q, k, v))  # (B * L/G, H, G, D)
    # 3. causal attention inside each group, in the group's (rolled) order
    if variant == "paper":  # plain causal: the wrapped last group [L-G/2..L-1, 0..G/2-1] sees its future
        allowed = None
    else:  # leak-free: and never a key later in the text than the query
        position = roll(torch.arange(length, device=q.device).expand(1, num_heads, length)[..., None], -half)
        position = group(position)[..., 0]  # (L/G, H, G): which token sits in each slot of each group
        in_order = torch.ones(group_size, group_size, dtype=torch.bool, device=q.device).tril()  # (G, G)
        not_future = position[..., None, :] <= position[..., :, None]  # (L/G, H, G, G)
        allowed = (in_order & not_future).repeat(batch, 1, 1, 1)  # (B * L/G, H, G, G)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, is_causal=allowed is None,
                                         dropout_p=dropout, scale=scaling)  # (B * L/G, H, G, D)
    # 4. ungroup and roll back
    out = out.reshape(batch, n, num_heads, group_size, dim).transpose(1, 2).reshape(batch, num_heads, length, dim)
    return roll(out, half)  # (B, H, L, D)


def reference_attention(q, k, v, mask: torch.Tensor, scaling: float | None = None, *,
                        softcap: float | None = None, dropout: float = 0.0) -> torch.Tensor:
    """Plain softmax attention with an explicit bool mask, written out (no fused kernel): the definition
    the patterns are checked with. ``mask`` broadcasts to (B, H, L, L); ``k, v`` may have fewer heads.
    ``softcap`` (Gemma-2) squashes the scores into (-softcap, softcap) before the mask:
    ``softcap * tanh(scores / softcap)``; no fused SDPA kernel can do that, so this is its path."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scaling if scaling is not None else 1 / math.sqrt(q.shape[-1]))
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~mask, float("-inf"))  # (B, H, L, L)
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with nothing allowed: zeros, not NaN
    return F.dropout(weights, p=dropout, training=dropout > 0) @ v  # (B, H, L, D)


def masked_attention(q, k, v, mask: torch.Tensor, *, scaling=None, dropout: float = 0.0) -> torch.Tensor:
    """SDPA with an explicit bool mask broadcasting to (B, H, L, L): the ablation patterns, padded batches."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:  # (copies only when needed: the kernel's summation order follows the layout it is given)
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    # A query row with nothing allowed (a padding token whose whole group is padding) would give NaN;
    # let it see itself. Its output is never used, but NaN would leak into gradients.
    empty_rows = ~mask.any(dim=-1, keepdim=True)  # (..., L, 1)
    if empty_rows.any():
        mask = mask | (empty_rows & torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling)


# --------------------------------------------------------------------------------------------------
# Validation: bad input gets a ValueError that names the parameter and the fix.


def _multiples_near(length: int, step: int) -> str:
    below, above = (length // step) * step, -(-length // step) * step
    return " or ".join(f"L={value}" for value in dict.fromkeys((below, above)) if value > 0)


def _even_divisors_near(length: int, group_size: int) -> str:
    evens = [g for g in range(2, length + 1, 2) if length % g == 0]
    if not evens:
        return f"no even G divides L={length}; use an even sequence length (e.g. L={length + 1})"
    below = [g for g in evens if g < group_size][-1:]
    above = [g for g in evens if g > group_size][:1]
    return "use " + " or ".join(f"G={g}" for g in below + above) + f" (even, dividing L={length})"


def group_size_for(length: int, ratio: float = DEFAULT_GROUP_SIZE_RATIO) -> int:
    """The group size ``G = L * ratio`` for a sequence of ``length`` tokens.

    S2 needs L/G groups (a whole number, so ``ratio = 1/n``) of an even number of tokens (the shift is
    G/2): L must be a multiple of 2n. A bad length gets the nearest lengths that work.

    >>> group_size_for(2048), group_size_for(2048, 1 / 8)
    (512, 256)
    """
    if not 0 < ratio <= 1:  # also catches nan
        raise ValueError(f"group_size_ratio={ratio} must be in (0, 1]; the paper uses 0.25 (G = L/4)")
    groups = round(1 / ratio)
    if abs(1 / ratio - groups) > 1e-6:
        raise ValueError(
            f"group_size_ratio={ratio} gives L/G = {1 / ratio:g} groups, not a whole number; "
            f"use group_size_ratio=1/{groups} (= {1 / groups:g})"
        )
    if length < 2 * groups or length % (2 * groups):
        raise ValueError(
            f"sequence length L={length} with group_size_ratio={ratio} gives G={length * ratio:g}, but G must be "
            f"an even whole number of tokens dividing L; use {_multiples_near(length, 2 * groups)} "
            f"(a multiple of {2 * groups})"
        )
    return length // groups


def check_shapes(length: int, group_size: int, num_heads: int, num_kv_heads: int, pattern: str = "s2") -> None:
    """Raise a clear ``ValueError`` unless (L, G, H, H_kv) fit the pattern. Any H works, odd too.

    >>> check_shapes(16, 4, num_heads=9, num_kv_heads=3)  # SmolLM2-135M's heads: fine
    >>> check_shapes(16, 3, num_heads=4, num_kv_heads=4)
    Traceback (most recent call last):
    ValueError: sequence length L=16 is not a multiple of group_size=3; use L=15 or L=18, or a group size that divides 16
    """
    if pattern not in PATTERNS:
        raise ValueError(f"attention_pattern={pattern!r} is unknown; choose one of {PATTERNS}")
    try:
        group_size = operator.index(group_size)
    except TypeError:
        raise ValueError(f"group_size={group_size!r} must be a whole number of tokens; for S2-Attn use "
                         f"group_size_for(L) (G = L/4)") from None
    if group_size < 1 or group_size > length:
        raise ValueError(
            f"group_size={group_size} must be between 1 and the sequence length L={length}; "
            f"for S2-Attn use G = L/4 (group_size_for(L))"
        )
    if length % group_size:
        raise ValueError(
            f"sequence length L={length} is not a multiple of group_size={group_size}; "
            f"use {_multiples_near(length, group_size)}, or a group size that divides {length}"
        )
    if pattern in ("s2", "pattern2") and group_size % 2:
        raise ValueError(f"group_size={group_size} is odd, but the shift is G/2; "
                         f"{_even_divisors_near(length, group_size)}")
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}; "
                         "each key/value head must serve the same number of query heads")


def _check_tensors(q, k, v, attention_mask) -> None:
    """Shapes, dtypes and the mask of s2_attention's inputs (each message names the tensor and the fix)."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be (B, H, L, D); got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.is_floating_point() and k.is_floating_point() and v.is_floating_point()):
        raise ValueError(f"q, k, v must be floating point, got {q.dtype}, {k.dtype}, {v.dtype}; use .float()")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}; cast them with .to()")
    batch, _, length, dim = q.shape
    if k.shape[0] != batch or v.shape[0] != batch:
        raise ValueError(f"batch sizes differ: q has B={batch}, k {k.shape[0]}, v {v.shape[0]}; pass one batch")
    if k.shape[-1] != dim or v.shape[-1] != dim:
        raise ValueError(f"head_dim differs: q has D={dim}, k {k.shape[-1]}, v {v.shape[-1]}; "
                         "q, k and v need the same head_dim")
    if k.shape[1] != v.shape[1] or v.shape[2] != k.shape[2]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same heads and length "
                         "(one value per key)")
    if k.shape[2] != length:
        raise ValueError(
            f"S2-Attn needs keys for exactly the query tokens (L={length}), got {k.shape[2]} keys "
            "(a KV cache?); generate in eval mode (model.eval()), where full attention is used"
        )
    if attention_mask is not None:
        shape = tuple(attention_mask.shape)
        ok = len(shape) == 4 and shape[0] in (1, batch) and shape[1] == 1 and shape[2] in (1, length) and shape[3] == length
        if attention_mask.dtype != torch.bool or not ok:
            raise ValueError(
                f"attention_mask must be a bool mask (True = may attend) of shape (B, 1, L, L) = "
                f"({batch}, 1, {length}, {length}) or (B, 1, 1, L) for key padding; got {attention_mask.dtype} {shape}"
            )

# --------------------------------------------------------------------------------------------------
# The entry point: checks, then the backend.


@functools.cache
def _warn_flex_cpu_backward() -> None:
    warnings.warn(
        "FlexAttention has no backward pass on CPU (NotImplementedError in torch); "
        "s2_attention(backend='flex') uses backend='sdpa' whenever gradients are needed on CPU.",
        stacklevel=3,
    )


def right_padding_only(attention_mask: torch.Tensor, variant: str, pattern: str) -> bool:
    """Whether a key-padding mask (B, 1, 1, L) can be dropped: every row is real tokens then padding, and
    the groups are contiguous and causal (the leak-free variant of a grouped pattern). Then a real query
    only ever sees earlier keys of its group, all real, so the mask changes no output a loss reads (padded
    query rows compute garbage either way) and the fast O(L·G) path runs instead of a dense O(L²) mask.
    The paper's variant wraps its first G/2 tokens around to the row's end, the padding: it keeps the mask.

    >>> right_padding_only(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)[:, None, None], "leak_free", "s2")
    True
    >>> right_padding_only(torch.tensor([[0, 1, 1, 1]], dtype=torch.bool)[:, None, None], "leak_free", "s2")  # left
    False
    """
    if variant != "leak_free" or pattern not in GROUPED_PATTERNS or attention_mask.shape[-2] != 1:
        return False
    real = attention_mask.reshape(attention_mask.shape[0], -1).int()  # (B, L)
    return bool((real[:, 1:] <= real[:, :-1]).all())


def s2_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group_size: int, variant: str = "leak_free",
                 backend: str = "sdpa", *, scaling: float | None = None, pattern: str = "s2",
                 attention_mask: torch.Tensor | None = None, dropout: float = 0.0,
                 sliding_window: int | None = None, softcap: float | None = None) -> torch.Tensor:
    """Shifted sparse attention of ``q (B, H, L, D)`` over ``k, v (B, H_kv, L, D)``: ``(B, H, L, D)``.

    Equals :func:`shifted_sparse_attention` (and SDPA with the dense mask of
    ``pattern_mask(pattern, group_size, H, L, variant)``); ``backend`` picks the kernel (module doc).
    ``sliding_window`` (W) and ``softcap`` are what a model layer passes (families.py). S2 on a
    sliding-window layer is the pattern *and* the window, ``q - kv < W`` (training never shows a layer keys
    it cannot see at inference). A group spans G tokens, so for the grouped patterns ``W >= G`` changes
    nothing (the fast path runs) and ``W < G`` cuts each group to the window (dense-mask path).
    ``softcap`` runs :func:`reference_attention` with the dense mask (eager math, O(L^2) memory).
    ``pattern`` also takes the ablations of :mod:`longlora_kit.patterns` (``"pattern1"``,
    ``"pattern2"``, ``"dilated"``, ``"block_sparse"``, ``"stride_sparse"``) and ``"full"``; those and
    padded batches run as SDPA with a dense mask, except right-padded leak-free ones
    (:func:`right_padding_only`). ``attention_mask``: optional bool ``(B, 1, L, L)`` or
    key padding ``(B, 1, 1, L)`` (True = may attend), and-ed with the pattern. ``scaling`` defaults to
    ``1/sqrt(D)``.

    >>> q = k = v = torch.randn(1, 2, 8, 4)
    >>> s2_attention(q, k, v, group_size=8, pattern="pattern1").allclose(
    ...     F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)  # one group = full attention
    True
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not an S2-Attn variant; choose one of {VARIANTS}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {BACKENDS}")
    _check_tensors(q, k, v, attention_mask)
    num_heads, length = q.shape[1], q.shape[2]
    check_shapes(length, group_size, num_heads, k.shape[1], pattern)
    if sliding_window is not None and not (isinstance(sliding_window, int) and sliding_window >= 1):
        raise ValueError(f"sliding_window={sliding_window!r} must be a whole number of tokens >= 1, or None")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap={softcap!r} must be > 0 (Gemma-2 uses 50.0), or None")
    window_cuts = sliding_window is not None and (pattern not in GROUPED_PATTERNS or sliding_window < group_size)
    if softcap is not None or window_cuts:
        if backend in ("flash", "flex"):
            raise ValueError(f"backend={backend!r} does not do a sliding window below G or softcap "
                             f"(sliding_window={sliding_window}, softcap={softcap}); use backend='sdpa'")
        mask = dense_mask(pattern_mask(pattern, group_size, num_heads, length, variant), num_heads, length, q.device)
        if window_cuts:
            mask = mask & dense_mask(sliding_window_mask(sliding_window), 1, length, q.device)  # (H, L, L)
        if attention_mask is not None:
            mask = mask & attention_mask  # (B, H, L, L)
        if softcap is None:
            return masked_attention(q, k, v, mask, scaling=scaling, dropout=dropout)
        return reference_attention(q, k, v, mask, scaling, softcap=softcap, dropout=dropout)

    if attention_mask is not None and right_padding_only(attention_mask, variant, pattern):
        attention_mask = None  # the fast path gives every real token the same output (see right_padding_only)
    if backend == "flex":
        if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            _warn_flex_cpu_backward()
            backend = "sdpa"
        elif dropout:
            raise ValueError(f"backend='flex' does not do attention dropout (got dropout={dropout}); use 'sdpa'")
        else:
            grouping = Grouping(group_size, variant, pattern)
            return flex.attention(q, k, v, grouping, scaling=scaling, attention_mask=attention_mask)
    if attention_mask is not None or pattern not in GROUPED_PATTERNS:
        if backend == "flash":
            raise ValueError(
                f"backend='flash' runs the grouped patterns {GROUPED_PATTERNS} on unpadded batches only "
                f"(got pattern={pattern!r}, attention_mask={'given' if attention_mask is not None else None}); "
                "use backend='sdpa'"
            )
        mask = dense_mask(pattern_mask(pattern, group_size, num_heads, length, variant), num_heads, length, q.device)
        if attention_mask is not None:
            mask = mask & attention_mask  # (B, H, L, L)
        return masked_attention(q, k, v, mask, scaling=scaling, dropout=dropout)
    if backend == "reference":
        return shifted_sparse_attention(q, k, v, group_size, variant, pattern=pattern, scaling=scaling, dropout=dropout)
    kernel = flash.attention if backend == "flash" else rows.attention
    return kernel(q, k, v, Grouping(group_size, variant, pattern), scaling=scaling, dropout=dropout)


# --------------------------------------------------------------------------------------------------
# transformers integration (AttentionInterface + AttentionMaskInterface; no monkeypatching)


def attention_settings(config) -> dict:
    """The S2 settings a model config carries (with defaults): ratio, pattern, eval behaviour, backend."""
    return {
        "group_size_ratio": float(getattr(config, "group_size_ratio", DEFAULT_GROUP_SIZE_RATIO)),
        "attention_pattern": getattr(config, "attention_pattern", "s2"),
        "sparse_attention_in_eval": bool(getattr(config, "sparse_attention_in_eval", False)),
        "backend": getattr(config, "s2_attn_backend", "sdpa"),
    }


def _group_size_for_model(module, query, key, ratio: float) -> int:
    """G for this forward pass; a length S2 cannot take says how to switch to full attention."""
    length = query.shape[2]
    try:
        if key.shape[2] != length:
            raise ValueError(f"S2-Attn needs keys for exactly the query tokens (L={length}), got {key.shape[2]} "
                             "keys (a KV cache)")
        return group_size_for(length, ratio)
    except ValueError as err:
        hint = ("the model is in training mode, where S2-Attn runs; for inference at any length (generate(), "
                "evaluation) call model.eval() first: eval mode uses full attention") if module.training else (
                "config.sparse_attention_in_eval=True runs S2-Attn in eval mode too; set it to False for "
                "full attention at any length")
        raise ValueError(f"{err}. Note: {hint}") from err


def _check_call(module, kwargs) -> None:
    """Refuse what S2 cannot honour: an unchecked family, a non-causal layer, an unknown keyword."""
    family = family_of(module.config)
    if getattr(module, "is_causal", True) is False:
        raise ValueError(f"{type(module).__name__} (family {family.model_type!r}) has is_causal=False; S2-Attn "
                         "is for causal decoder self-attention only")
    # a keyword set to None or False asks for nothing (peft passes output_attentions=None)
    unknown = sorted(k for k, v in kwargs.items() if k not in IGNORED_KWARGS and v is not None and v is not False)
    if unknown:  # e.g. attention sinks (s_aux), packed-sequence offsets (cu_seq_lens_q): never drop them
        raise ValueError(f"{type(module).__name__} (family {family.model_type!r}) passed {unknown} to the "
                         "attention function; S2-Attn does not implement them and will not ignore them")


def _attention_function(variant: str):
    def s2_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                             sliding_window=None, softcap=None, **kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        _check_call(module, kwargs)
        settings = attention_settings(module.config)
        if not module.training and not settings["sparse_attention_in_eval"]:
            # full attention: transformers' mask already holds the window (and the padding); SDPA cannot
            # soft-cap (transformers raises), so softcap runs the written-out attention with that mask
            if softcap is None:
                return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                              scaling=scaling, **kwargs)
            if attention_mask is None:  # None means causal (with a cache, the queries are the last tokens)
                q_len, k_len = query.shape[2], key.shape[2]
                attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
            out = reference_attention(query, key, value, attention_mask, scaling, softcap=softcap)
            return out.transpose(1, 2), None  # (B, L, H, D)
        pattern = settings["attention_pattern"]
        if pattern == "s2_layers":  # the paper's "S2 across layers": shift in every other layer, all heads
            pattern = "pattern2" if (module.layer_idx or 0) % 2 else "pattern1"
        group = _group_size_for_model(module, query, key, settings["group_size_ratio"])
        if attention_mask is not None:
            # transformers' mask is causal & padding. S2's pattern brings its own causality (the paper
            # variant's wrapped group deliberately sees the last G/2 tokens), so keep only the padding:
            # the keys some query may see, i.e. the real tokens. (B, 1, 1, L)
            attention_mask = attention_mask.any(dim=-2, keepdim=True)
            if attention_mask.all():  # no padding (e.g. only a sliding window's mask): the fast path can run
                attention_mask = None
        out = s2_attention(
            query, key, value, group, variant, settings["backend"], scaling=scaling, pattern=pattern,
            attention_mask=attention_mask, dropout=dropout if module.training else 0.0,
            sliding_window=sliding_window, softcap=softcap,
        )  # (B, H, L, D), memory (B, L, H, D)
        return out.transpose(1, 2), None  # (B, L, H, D)

    s2_attention_forward.__name__ = f"s2_attention_forward_{variant}"
    return s2_attention_forward


_ATTENTION_FUNCTIONS = {name: _attention_function(variant) for name, variant in IMPLEMENTATIONS.items()}


def register() -> None:
    """Register ``"s2_attn"`` (leak-free) and ``"s2_attn_paper"`` with transformers, for
    ``attn_implementation=``. Idempotent: calling it again changes nothing.

    >>> register(); register()
    >>> from transformers import AttentionInterface
    >>> "s2_attn" in AttentionInterface._global_mapping
    True
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    for name, function in _ATTENTION_FUNCTIONS.items():
        AttentionInterface.register(name, function)
        # Without a mask function transformers hands the attention function attention_mask=None even
        # for padded batches; sdpa_mask gives a bool (B, 1, L, L) mask when there is padding, else None.
        AttentionMaskInterface.register(name, sdpa_mask)

def enable(model, implementation: str = "s2_attn"):
    """Switch ``model`` to S2-Attn: :func:`register`, refuse a family or model S2 cannot run on (by name),
    then ``model.set_attn_implementation``. Returns the model. Prefer it to ``attn_implementation=`` alone,
    which transformers accepts even for models that never call the registered function.

    >>> from longlora_kit.families import build, tiny_config
    >>> enable(build(tiny_config("qwen3")), "s2_attn_paper").config._attn_implementation
    's2_attn_paper'
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r} is not S2-Attn; choose one of {tuple(IMPLEMENTATIONS)}")
    check_attention_backend(model)
    register()
    model.set_attn_implementation(implementation)
    return model

# --------------------------------------------------------------------------------------------------
# Notebook sizes


def notebook_settings(profile: str | None = None) -> dict:
    """Sizes the stage-2 notebook uses, by profile (``budgets.NOTEBOOK_02``; smoke = what the tests run)."""
    from .budgets import NOTEBOOK_02, at

    return at(NOTEBOOK_02, profile)
