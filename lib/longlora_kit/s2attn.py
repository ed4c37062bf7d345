r"""S2-Attn (shifted sparse attention): the attention LongLoRA trains with, three backends.

Cut the L tokens into groups of G (``G = L/4`` by default). Heads ``h < H/2`` attend causally inside
groups ``[0,G), [G,2G), ...``; heads ``h >= H/2`` inside groups shifted by ``s = G/2``, so information
crosses every group border. A query sees at most G keys instead of up to L, so attention FLOPs fall
from ``~L^2/2`` to ``~L G/2`` per head: a factor ``L/G = 4``. At inference the same weights run with
full attention. The patterns themselves (and the ``leak_free`` / ``paper`` variants) are defined once,
in :mod:`longlora_kit.patterns`; every backend here is tested against them.

Backends of :func:`s2_attention`:

- ``sdpa`` (default, CPU and GPU): every group becomes one "batch row" of a single
  ``scaled_dot_product_attention(..., is_causal=True)`` call; no L x L mask is built. Which (head,
  token) rows go into which group is a fixed *permutation* of the rows of q, k and v, so the whole
  shuffle is one gather in and one scatter out, each a single copy forward and a single copy backward
  (a roll-and-reshape version copies q, k, v and the output several times more, and its autograd
  backward allocates and zero-fills full-size buffers for every slice). The ``leak_free`` shifted half
  has segments ``G/2, G, ..., G, G/2``: its two half-groups go into a second, small SDPA call.
- ``flash``: flash-attn's variable-length kernel; the same permutation, with ``cu_seqlens`` at the group
  borders (needs the flash-attn package, a CUDA GPU, fp16/bf16).
- ``flex``: FlexAttention with a block mask compiled from the pattern's mask function. FlexAttention has
  no CPU backward, so on CPU with gradients required it warns once and uses ``sdpa``.

transformers integration: ``import longlora_kit`` registers ``"s2_attn"`` (leak-free) and
``"s2_attn_paper"`` with ``AttentionInterface`` and ``AttentionMaskInterface`` (the second so that
padding masks reach the function at all). In training mode they run S2 with
``G = L * config.group_size_ratio`` (default 1/4); in eval mode plain full causal SDPA.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F

from .patterns import GROUPED_PATTERNS, PATTERNS, VARIANTS, dense_mask, pattern_mask

BACKENDS = ("sdpa", "flash", "flex")
DEFAULT_GROUP_SIZE_RATIO = 0.25
IMPLEMENTATIONS = {"s2_attn": "leak_free", "s2_attn_paper": "paper"}


# --------------------------------------------------------------------------------------------------
# Validation: bad input gets a ValueError that names the numbers and the fix.


def _nearest_multiples(length: int, step: int) -> str:
    below, above = (length // step) * step, -(-length // step) * step
    options = [v for v in (below, above) if v > 0]
    return " or ".join(f"L={v}" for v in dict.fromkeys(options))


def group_size_for(length: int, ratio: float = DEFAULT_GROUP_SIZE_RATIO) -> int:
    """The group size G for a sequence of ``length`` tokens and a group ratio (G = L * ratio).

    G must be an even number of tokens (the shift is G/2) that divides L.

    >>> group_size_for(2048), group_size_for(2048, 1 / 8)
    (512, 256)
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"group_size_ratio={ratio} must be in (0, 1]; the paper uses 0.25 (G = L/4)")
    exact = length * ratio
    group = round(exact)
    if abs(exact - group) > 1e-6 or group < 2 or group % 2 or length % group:
        groups = max(1, round(1 / ratio))
        raise ValueError(
            f"sequence length L={length} with group_size_ratio={ratio} gives G={exact:g}, but G must be an "
            f"even whole number of tokens dividing L; use {_nearest_multiples(length, 2 * groups)} "
            f"(a multiple of {2 * groups}) with ratio 1/{groups}"
        )
    return group


def check_shapes(length: int, group_size: int, num_heads: int, num_kv_heads: int, pattern: str = "s2") -> None:
    """Raise a clear ``ValueError`` unless (L, G, H, H_kv) fit the pattern."""
    if pattern not in PATTERNS:
        raise ValueError(f"attention_pattern={pattern!r} is unknown; choose one of {PATTERNS}")
    if group_size < 1 or group_size > length:
        raise ValueError(
            f"group_size={group_size} must be between 1 and the sequence length L={length}; "
            f"for S2-Attn use G = L/4 = {length / 4:g}"
        )
    if length % group_size:
        raise ValueError(
            f"sequence length L={length} is not a multiple of group_size={group_size}; "
            f"use {_nearest_multiples(length, group_size)}, or a group size that divides {length}"
        )
    splits_heads = pattern in ("s2", "block_sparse", "stride_sparse")
    if pattern in ("s2", "pattern2") and group_size % 2:
        raise ValueError(
            f"group_size={group_size} is odd, but the shift is G/2; use G={group_size - 1} or "
            f"G={group_size + 1} (and L a multiple of it)"
        )
    if splits_heads and num_heads % 2:
        raise ValueError(
            f"num_heads={num_heads} is odd, but S2-Attn gives half of the heads the shifted pattern; "
            f"use {num_heads - 1 or 2} or {num_heads + 1} heads"
        )
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
    if splits_heads and num_kv_heads % 2:
        raise ValueError(
            f"num_kv_heads={num_kv_heads} is odd, so the two halves of the {num_heads} query heads would share "
            f"a key/value head; use an even number of key/value heads (e.g. {num_kv_heads + 1})"
        )


# --------------------------------------------------------------------------------------------------
# The grouping plan: which (head, position) rows form each group, in attention order.


@functools.lru_cache(maxsize=64)
def _plan(length: int, group_size: int, num_heads: int, variant: str, pattern: str):
    """For each group size present, ``(heads (N,), positions (N, size))``: group n is the tokens
    ``positions[n]`` of head ``heads[n]``, in the order the causal mask runs.

    >>> [(size, pos.tolist()) for size, (_, pos) in _plan(8, 4, 1, "paper", "pattern2").items()]
    [(4, [[2, 3, 4, 5], [6, 7, 0, 1]])]
    """
    half = group_size // 2
    n = length // group_size
    aligned = [torch.arange(g * group_size, (g + 1) * group_size) for g in range(n)]
    if variant == "paper":  # roll by -G/2: the last group wraps around to tokens 0..G/2-1
        shifted = [(a + half) % length for a in aligned]
    else:  # leak-free: segments G/2, G, ..., G, G/2
        middle = [a + half for a in aligned[:-1]]
        shifted = [torch.arange(0, half), *middle, torch.arange(length - half, length)]
    by_size: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    for head in range(num_heads):
        use_shift = pattern == "pattern2" or (pattern == "s2" and head >= num_heads // 2)
        for positions in shifted if use_shift else aligned:
            heads, groups = by_size.setdefault(len(positions), ([], []))
            heads.append(head)
            groups.append(positions)
    return {size: (torch.tensor(h), torch.stack(g)) for size, (h, g) in sorted(by_size.items(), reverse=True)}


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """View ``x`` (B, H, L, D) as rows (B, H*L, D) without copying when its memory allows.

    transformers hands over q/k/v as transposes of (B, L, H, D) memory ("lh": row = p*H + h); a plain
    contiguous (B, H, L, D) tensor is "hl" (row = h*L + p).
    """
    batch, heads, length, dim = x.shape
    if x.transpose(1, 2).is_contiguous():
        return x.transpose(1, 2).reshape(batch, length * heads, dim), "lh"
    return x.contiguous().view(batch, heads * length, dim), "hl"


@functools.lru_cache(maxsize=256)
def _row_index(length, group_size, num_heads, variant, pattern, queries_per_kv_head, layout, device):
    """Row ids (into ``_rows``) of every group, for a tensor whose head is h // queries_per_kv_head (GQA)."""
    index = []
    for heads, positions in _plan(length, group_size, num_heads, variant, pattern).values():
        own_heads = (heads // queries_per_kv_head)[:, None]  # (N, 1)
        own_count = num_heads // queries_per_kv_head
        rows = own_heads * length + positions if layout == "hl" else positions * own_count + own_heads
        index.append(rows.to(device))  # (N, size)
    return tuple(index)


class _GatherRows(torch.autograd.Function):
    """``x[:, index]`` for several indices; backward writes each gradient back with one copy.

    When the indices cover every row exactly once (a permutation) the gradient buffer needs no
    zero-filling; with repeated rows (key/value heads shared by query heads) gradients are summed.
    """

    @staticmethod
    def forward(ctx, rows, permutation: bool, *indices):
        ctx.save_for_backward(*indices)
        ctx.shape, ctx.permutation = rows.shape, permutation
        return tuple(rows[:, index] for index in indices)  # each (B, N, size, D)

    @staticmethod
    def backward(ctx, *grads):
        grad = grads[0].new_empty(ctx.shape) if ctx.permutation else grads[0].new_zeros(ctx.shape)
        for g, index in zip(grads, ctx.saved_tensors):
            if ctx.permutation:
                grad[:, index] = g
            else:
                grad.index_add_(1, index.reshape(-1), g.reshape(g.shape[0], -1, g.shape[-1]))
        return (grad, None) + (None,) * len(grads)


class _ScatterRows(torch.autograd.Function):
    """The inverse of a permutation gather: put each group's rows back in place (one copy each way)."""

    @staticmethod
    def forward(ctx, num_rows: int, indices: tuple, *parts):
        ctx.indices = indices
        out = parts[0].new_empty(parts[0].shape[0], num_rows, parts[0].shape[-1])  # (B, R, D)
        for part, index in zip(parts, indices):
            out[:, index] = part
        return out

    @staticmethod
    def backward(ctx, grad):
        return (None, None) + tuple(grad[:, index] for index in ctx.indices)


def _grouped(q, k, v, group_size, variant, pattern):
    """(heads, positions) groups of q/k/v as lists of (B, N, size, D) tensors, plus the output scatter."""
    batch, num_heads, length, dim = q.shape
    rep = num_heads // k.shape[1]
    key = (length, group_size, num_heads, variant, pattern)
    gathered = []
    for x, per_head in ((q, 1), (k, rep), (v, rep)):
        rows, layout = _rows(x)
        index = _row_index(*key, per_head, layout, rows.device)
        gathered.append(_GatherRows.apply(rows, per_head == 1, *index))
    out_index = _row_index(*key, 1, "lh", q.device)

    def scatter(parts):  # list of (B, N, size, D) -> (B, H, L, D), memory (B, L, H, D)
        out = _ScatterRows.apply(length * num_heads, out_index, *parts)
        return out.view(batch, length, num_heads, dim).transpose(1, 2)

    return gathered, scatter


# --------------------------------------------------------------------------------------------------
# Backends


def _sdpa_grouped(q, k, v, group_size, variant, pattern, scaling, dropout):
    (qs, ks, vs), scatter = _grouped(q, k, v, group_size, variant, pattern)
    outs = [
        F.scaled_dot_product_attention(qg, kg, vg, dropout_p=dropout, is_causal=True, scale=scaling)
        for qg, kg, vg in zip(qs, ks, vs)
    ]  # each (B, N, size, D): the groups play the role of heads
    return scatter(outs)


def _sdpa_dense(q, k, v, mask, scaling, dropout):
    """Reference-style SDPA with an explicit bool mask (ablation patterns, padded batches)."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    # A query row with nothing allowed (a padding token whose whole group is padding) would give NaN;
    # let it see itself. Its output is never used, but NaN would leak into gradients.
    empty_rows = ~mask.any(dim=-1, keepdim=True)  # (..., L, 1)
    if empty_rows.any():
        eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
        mask = mask | (empty_rows & eye)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling)


def _varlen_grouped(q, k, v, group_size, variant, pattern, scaling, dropout, varlen_kernel):
    """Pack every group back to back as one long sequence, ``cu_seqlens`` at the group borders, and run a
    flash-attn-style ``varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=, softmax_scale=, causal=)``
    on ``(rows, 1, D)`` tensors."""
    batch, dim = q.shape[0], q.shape[-1]
    (qs, ks, vs), scatter = _grouped(q, k, v, group_size, variant, pattern)

    def packed(parts):  # (B, N, size, D) per size -> (B * all rows, 1, D): batch-major, groups back to back
        return torch.cat([p.reshape(batch, -1, dim) for p in parts], dim=1).reshape(-1, 1, dim)

    sizes = [p.shape[2] for p in qs for _ in range(p.shape[1])] * batch
    cu_seqlens = torch.tensor([0, *sizes], device=q.device).cumsum(0).to(torch.int32)
    out = varlen_kernel(
        packed(qs), packed(ks), packed(vs), cu_seqlens, cu_seqlens, max(sizes), max(sizes),
        dropout_p=dropout, softmax_scale=scaling, causal=True,
    ).reshape(batch, -1, dim)  # (B, rows, D)
    parts, start = [], 0
    for p in qs:  # undo packed(): back to (B, N, size, D) per group size
        count = p.shape[1] * p.shape[2]
        parts.append(out[:, start:start + count].reshape(p.shape))
        start += count
    return scatter(parts)


def _flash_grouped(q, k, v, group_size, variant, pattern, scaling, dropout):
    if q.dtype not in (torch.float16, torch.bfloat16) or q.device.type != "cuda":
        raise ValueError(
            f"backend='flash' needs fp16/bf16 tensors on a CUDA GPU, got {q.dtype} on {q.device.type}; "
            "use backend='sdpa' (or .to(torch.bfloat16) on cuda)"
        )
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError as err:
        raise ValueError("backend='flash' needs the flash-attn package (pip install -e '.[gpu]'); "
                         "use backend='sdpa'") from err
    return _varlen_grouped(q, k, v, group_size, variant, pattern, scaling, dropout, flash_attn_varlen_func)


@functools.lru_cache(maxsize=16)
def _block_mask(pattern, group_size, num_heads, length, variant, device):
    from torch.nn.attention.flex_attention import create_block_mask

    mask = pattern_mask(pattern, group_size, num_heads, length, variant)
    return create_block_mask(mask, B=None, H=num_heads, Q_LEN=length, KV_LEN=length, device=device)


@functools.cache
def _warn_flex_cpu_backward() -> None:
    warnings.warn(
        "FlexAttention has no backward pass on CPU (NotImplementedError in torch); "
        "s2_attention(backend='flex') uses backend='sdpa' whenever gradients are needed on CPU.",
        stacklevel=4,
    )


def _flex(q, k, v, group_size, variant, pattern, scaling, attention_mask):
    from torch.nn.attention.flex_attention import and_masks, create_block_mask, flex_attention

    batch, num_heads, length, _ = q.shape
    device = str(q.device)
    if attention_mask is None:
        block_mask = _block_mask(pattern, group_size, num_heads, length, variant, device)
    else:
        padding = attention_mask.expand(batch, 1, length, length)

        def allowed(b, h, q_idx, kv_idx):
            return padding[b, 0, q_idx, kv_idx]

        mask = and_masks(pattern_mask(pattern, group_size, num_heads, length, variant), allowed)
        block_mask = create_block_mask(mask, B=batch, H=num_heads, Q_LEN=length, KV_LEN=length, device=device)
    with warnings.catch_warnings():  # eager flex on CPU says it materializes the scores; fine for demos
        warnings.filterwarnings("ignore", message=".*flex_attention.*")
        return flex_attention(
            q, k, v, block_mask=block_mask, scale=scaling, enable_gqa=k.shape[1] != num_heads
        )


def s2_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    group_size: int,
    variant: str = "leak_free",
    backend: str = "sdpa",
    scaling: float | None = None,
    *,
    pattern: str = "s2",
    attention_mask: torch.Tensor | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Shifted sparse attention of ``q (B, H, L, D)`` over ``k, v (B, H_kv, L, D)``: ``(B, H, L, D)``.

    Equals SDPA with ``dense_mask(pattern_mask(pattern, group_size, H, L, variant))`` (and the padding
    mask), faster. ``pattern`` also takes the ablations of :mod:`longlora_kit.patterns` (``"pattern1"``,
    ``"pattern2"``, ``"dilated"``, ``"block_sparse"``, ``"stride_sparse"``) and ``"full"``.
    ``attention_mask``: optional bool ``(B, 1, L, L)`` (True = may attend), e.g. transformers' padding
    mask; it is combined with the pattern (dense path). ``scaling`` defaults to ``1/sqrt(D)``.
    The result is a ``(B, H, L, D)`` view of ``(B, L, H, D)`` memory, the layout transformers wants.

    >>> q = k = v = torch.randn(1, 2, 8, 4)
    >>> s2_attention(q, k, v, group_size=8, pattern="pattern1").allclose(
    ...     F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)  # one group = full attention
    True
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be (B, H, L, D); got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not an S2-Attn variant; choose one of {VARIANTS}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {BACKENDS}")
    batch, num_heads, length, _ = q.shape
    if k.shape[2] != length:
        raise ValueError(
            f"S2-Attn needs keys for exactly the query tokens (L={length}), got {k.shape[2]} keys "
            "(a KV cache?); generate in eval mode, where full attention is used"
        )
    check_shapes(length, group_size, num_heads, k.shape[1], pattern)
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        raise ValueError(f"attention_mask must be a bool (B, 1, L, L) mask, got dtype {attention_mask.dtype}")

    if backend == "flex":
        if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            _warn_flex_cpu_backward()
            backend = "sdpa"
        elif dropout:
            raise ValueError(f"backend='flex' does not do attention dropout (got dropout={dropout}); use 'sdpa'")
        else:
            return _flex(q, k, v, group_size, variant, pattern, scaling, attention_mask)

    if backend == "flash":
        if attention_mask is not None or pattern not in GROUPED_PATTERNS:
            raise ValueError(
                f"backend='flash' runs the grouped patterns {GROUPED_PATTERNS} on unpadded batches only "
                f"(got pattern={pattern!r}, attention_mask={'given' if attention_mask is not None else None}); "
                "use backend='sdpa'"
            )
        return _flash_grouped(q, k, v, group_size, variant, pattern, scaling, dropout)

    if attention_mask is None and pattern in GROUPED_PATTERNS:
        return _sdpa_grouped(q, k, v, group_size, variant, pattern, scaling, dropout)
    mask = dense_mask(pattern_mask(pattern, group_size, num_heads, length, variant), num_heads, length, q.device)
    if attention_mask is not None:
        mask = mask & attention_mask  # (B, H, L, L)
    return _sdpa_dense(q, k, v, mask, scaling, dropout)


def reference_attention(q, k, v, mask: torch.Tensor, scaling: float | None = None) -> torch.Tensor:
    """Plain softmax attention with an explicit bool mask, written out (no fused kernel): the reference.

    ``mask`` broadcasts to (B, H, L, L); ``k, v`` may have fewer heads (GQA).
    """
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scaling if scaling is not None else 1 / math.sqrt(q.shape[-1]))
    scores = scores.masked_fill(~mask, float("-inf"))  # (B, H, L, L)
    return torch.softmax(scores, dim=-1) @ v  # (B, H, L, D)


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


def _make_attention_function(variant: str):
    def s2_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        settings = attention_settings(module.config)
        if not module.training and not settings["sparse_attention_in_eval"]:
            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
            )
        pattern = settings["attention_pattern"]
        if pattern == "s2_layers":  # the paper's "S2 across layers": shift in every other layer, all heads
            pattern = "pattern2" if (module.layer_idx or 0) % 2 else "pattern1"
        length = query.shape[2]
        out = s2_attention(
            query, key, value, group_size_for(length, settings["group_size_ratio"]), variant,
            settings["backend"], scaling, pattern=pattern, attention_mask=attention_mask,
            dropout=dropout if module.training else 0.0,
        )  # (B, H, L, D), memory (B, L, H, D)
        return out.transpose(1, 2), None  # (B, L, H, D)

    s2_attention_forward.__name__ = f"s2_attention_forward_{variant}"
    return s2_attention_forward


def register() -> None:
    """Register ``"s2_attn"`` and ``"s2_attn_paper"`` with transformers (idempotent; done on import)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    for name, variant in IMPLEMENTATIONS.items():
        AttentionInterface.register(name, _make_attention_function(variant))
        # Without a mask function transformers hands the attention function attention_mask=None even
        # for padded batches; sdpa_mask gives a bool (B, 1, L, L) mask when there is padding, else None.
        AttentionMaskInterface.register(name, sdpa_mask)


# --------------------------------------------------------------------------------------------------
# Cost model (the paper's Table 11 shape)


def attention_cost(length: int, group_size: int | None = None, heads: int = 8, head_dim: int = 64,
                   layers: int = 1, causal: bool = True) -> dict:
    """Forward FLOPs and score-matrix memory of attention over L tokens, full (``group_size=None``) or in
    groups of G. QK^T and PV cost 2 * D FLOPs each per (query, key) pair computed. ``causal=True`` counts
    only the allowed pairs (about L^2/2); ``causal=False`` counts the whole L x L (or G x G per group)
    blocks, the convention of the paper's Table 11 (attention of Llama-2 7B at 8192 = 35.2 TFLOPs).

    >>> full, s2 = attention_cost(8192), attention_cost(8192, 2048)
    >>> round(full["flops"] / s2["flops"], 3)  # L/G = 4, less the causal diagonals
    3.999
    >>> round(attention_cost(8192, heads=32, head_dim=128, layers=32, causal=False)["flops"] / 1e12, 1)
    35.2
    """
    group = length if group_size is None else group_size
    per_group = group * (group + 1) // 2 if causal else group * group
    pairs = (length // group) * per_group  # (query, key) pairs per head
    return {
        "flops": 4 * head_dim * pairs * heads * layers,
        "score_bytes_fp32": 4 * heads * layers * (length // group) * group * group,  # dense G x G blocks
    }


def notebook_settings() -> dict:
    """Sizes the stage-2 notebook uses, by profile (smoke = what the tests run)."""
    from .profile import pick

    return pick({
        "smoke": {"timing_lengths": (256, 512, 1024), "timing_repeats": 1,
                  "train_steps": 8, "train_length": 64, "train_batch": 4},
        "workshop": {"timing_lengths": (512, 1024, 2048, 4096), "timing_repeats": 2,
                     "train_steps": 30, "train_length": 256, "train_batch": 8},
        "full": {"timing_lengths": (1024, 2048, 4096, 8192), "timing_repeats": 5,
                 "train_steps": 150, "train_length": 512, "train_batch": 8},
    })
