"""The default S2-Attn backend: one gather in, causal SDPA over all groups at once, one scatter out.

The readable S2 (``s2attn.shifted_sparse_attention``) rolls half of the heads, reshapes, attends,
reshapes back and rolls back: q, k, v and the output are copied several times, and autograd's
backward of every slice allocates and zero-fills full-size buffers. But which (head, token) rows end
up in which group is a fixed *permutation* of the rows, known from (L, G, H, variant, pattern) alone.
So we compute it once (:func:`plan`, cached), gather with one indexed copy and scatter back with one,
each a single copy in the backward too.

Groups of different sizes (the ``leak_free`` shifted heads have segments ``G/2, G, ..., G, G/2``) go
into separate SDPA calls: one per size, the half-size call being small.

>>> from longlora_kit.patterns import Grouping
>>> [(size, pos.tolist()) for size, (_, pos) in plan(Grouping(4, "paper", "pattern2"), 8, 1).items()]
[(4, [[2, 3, 4, 5], [6, 7, 0, 1]])]
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..patterns import Grouping


@functools.lru_cache(maxsize=64)
def plan(grouping: Grouping, length: int, num_heads: int) -> dict:
    """For each group size present, ``(heads (N,), positions (N, size))``: group n is the tokens
    ``positions[n]`` of head ``heads[n]``, in the order the causal mask runs (largest size first)."""
    group_size = grouping.group_size
    half, n = group_size // 2, length // group_size
    aligned = [torch.arange(g * group_size, (g + 1) * group_size) for g in range(n)]
    if grouping.variant == "paper":  # roll by -G/2: the last group wraps around to tokens 0..G/2-1
        shifted = [(a + half) % length for a in aligned]
    else:  # leak-free: segments G/2, G, ..., G, G/2
        shifted = [torch.arange(0, half), *[a + half for a in aligned[:-1]], torch.arange(length - half, length)]
    first = grouping.first_shifted_head(num_heads)
    by_size: dict[int, tuple[list[int], list[torch.Tensor]]] = {}
    for head in range(num_heads):
        for positions in shifted if head >= first else aligned:
            heads, groups = by_size.setdefault(len(positions), ([], []))
            heads.append(head)
            groups.append(positions)
    return {size: (torch.tensor(h), torch.stack(g)) for size, (h, g) in sorted(by_size.items(), reverse=True)}


def as_rows(x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """View ``x`` (B, H, L, D) as rows (B, H*L, D) without copying when its memory allows.

    transformers hands over q/k/v as transposes of (B, L, H, D) memory ("lh": row = p*H + h); a plain
    contiguous (B, H, L, D) tensor is "hl" (row = h*L + p).
    """
    batch, heads, length, dim = x.shape
    if x.transpose(1, 2).is_contiguous():
        return x.transpose(1, 2).reshape(batch, length * heads, dim), "lh"
    return x.contiguous().view(batch, heads * length, dim), "hl"


@functools.lru_cache(maxsize=256)
def row_index(grouping: Grouping, length: int, num_heads: int, queries_per_head: int, layout: str, device):
    """Row ids (into :func:`as_rows`) of every group, one (N, size) tensor per size, for a tensor whose
    head is ``h // queries_per_head`` (GQA: one key/value head serves several query heads, possibly
    in both halves)."""
    own_count = num_heads // queries_per_head
    index = []
    for heads, positions in plan(grouping, length, num_heads).values():
        own_heads = (heads // queries_per_head)[:, None]  # (N, 1)
        rows = own_heads * length + positions if layout == "hl" else positions * own_count + own_heads
        index.append(rows.to(device))  # (N, size)
    return tuple(index)


class GatherRows(torch.autograd.Function):
    """``rows[:, index]`` for several indices; backward writes each gradient back with one copy.

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


class ScatterRows(torch.autograd.Function):
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


def grouped(q, k, v, grouping: Grouping):
    """The groups of q/k/v as lists of (B, N, size, D) tensors (one per group size), and ``scatter``,
    which puts a list of such outputs back as (B, H, L, D) (a view of (B, L, H, D) memory)."""
    batch, num_heads, length, dim = q.shape
    rep = num_heads // k.shape[1]
    gathered = []
    for x, per_head in ((q, 1), (k, rep), (v, rep)):
        rows, layout = as_rows(x)
        index = row_index(grouping, length, num_heads, per_head, layout, rows.device)
        gathered.append(GatherRows.apply(rows, per_head == 1, *index))
    out_index = row_index(grouping, length, num_heads, 1, "lh", q.device)

    def scatter(parts):  # list of (B, N, size, D) -> (B, H, L, D), memory (B, L, H, D)
        out = ScatterRows.apply(length * num_heads, out_index, *parts)
        return out.view(batch, length, num_heads, dim).transpose(1, 2)

    return gathered, scatter


def attention(q, k, v, grouping: Grouping, *, scaling: float | None = None, dropout: float = 0.0):
    """S2-Attn of q (B, H, L, D) over k, v (B, H_kv, L, D): gather, causal SDPA per group size, scatter.

    >>> from longlora_kit.patterns import Grouping
    >>> q = k = v = torch.randn(1, 2, 8, 4)
    >>> attention(q, k, v, Grouping(8, pattern="pattern1")).allclose(
    ...     F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)  # one group = full
    True
    """
    (qs, ks, vs), scatter = grouped(q, k, v, grouping)
    outs = [
        F.scaled_dot_product_attention(qg, kg, vg, dropout_p=dropout, is_causal=True, scale=scaling)
        for qg, kg, vg in zip(qs, ks, vs)
    ]  # each (B, N, size, D): the groups play the role of heads
    return scatter(outs)
