r"""Attention patterns, defined once as mask functions over (head, query, key).

A *mask function* answers "may query ``q`` of head ``h`` attend to key ``kv``?" with a bool tensor.
It has FlexAttention's ``mask_mod`` signature ``mask(b, h, q_idx, kv_idx)`` and is written with
broadcasting integer arithmetic only (no Python branching on tensor values), so the same function

- is drawn as a dense ``(H, L, L)`` bool mask by :func:`dense_mask` (heatmaps, reference tests), and
- is compiled into a sparse block mask by FlexAttention (the ``flex`` backend in ``kernels/flex.py``).

The patterns (L tokens, groups of G tokens, s = G/2 the shift, H heads; every pattern is also causal,
``kv <= q``):

=================  ============================================================================
full causal        every earlier token: ``kv <= q``
pattern 1          groups ``[0,G), [G,2G), ...``: same group ``q // G == kv // G``
pattern 2          groups shifted by s. ``leak_free``: group id ``(p + s) // G``, i.e. groups
                   ``[0,s), [s,s+G), ..., [L-s,L)``; ``paper``: roll by -s, group, roll back: the
                   rolled index is ``r = (p - s) mod L``, same group ``r_q // G == r_kv // G`` and
                   causal in rolled order ``r_kv <= r_q``, so the last group wraps around:
                   ``[L-s, ..., L-1, 0, ..., s-1]``, and tokens ``0..s-1`` see the last s tokens
                   (the "leak" of the paper's Figure 3)
S2                 heads ``h < H//2`` use pattern 1, heads ``h >= H//2`` pattern 2 (S2-Attn; the
                   official code's slicing, so with an odd H the shifted half is the larger one)
=================  ============================================================================

The paper's Table 6 ablations ("pattern 1 only" and "pattern 2 only" are the two rows above applied to
all heads). The paper names the designs and cites their sources; these are our precise versions, each
letting a query see at most about G keys, as S2 does:

=================  ============================================================================
dilated            LongNet-style (Ding et al., 2023): segments of 2G tokens, dilation 2: a query
                   sees the keys of its own parity in its segment, ``q // 2G == kv // 2G`` and
                   ``q % 2 == kv % 2``
block sparse       BlockBERT-style (Qiu et al., 2020), causal: blocks of G; heads ``h < H/2``
                   attend within their own block (pattern 1), heads ``h >= H/2`` attend to the whole
                   *previous* block (block 0, having none, attends causally within itself)
stride sparse      Sparse-Transformer-style "strided" (Child et al., 2019): heads ``h < H/2`` see a
                   sliding window of the last G tokens ``q - G < kv <= q``; heads ``h >= H/2`` see
                   every G-th token back, ``(q - kv) % G == 0``
=================  ============================================================================

Worked example (L=16, G=4): in the paper variant the last shifted group is tokens [14, 15, 0, 1],
so token 0 sees tokens 14 and 15 (its future):

>>> m = dense_mask(pattern2(4, 16, "paper"), num_heads=1, length=16)[0]
>>> [k for k in range(16) if m[0, k]]
[0, 14, 15]
>>> m = dense_mask(pattern2(4, 16, "leak_free"), num_heads=1, length=16)[0]
>>> [k for k in range(16) if m[0, k]], [k for k in range(16) if m[5, k]]
([0], [2, 3, 4, 5])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

MaskMod = Callable[..., torch.Tensor]  # mask(b, h, q_idx, kv_idx) -> bool tensor (broadcast)

VARIANTS = ("leak_free", "paper")
PATTERNS = ("s2", "pattern1", "pattern2", "dilated", "block_sparse", "stride_sparse", "full")
# Patterns that are "groups of G (some shifted by G/2), causal inside each group": the fast backends
# (group reshape + SDPA is_causal, flash varlen) handle exactly these.
GROUPED_PATTERNS = ("s2", "pattern1", "pattern2")


@dataclass(frozen=True)
class Grouping:
    """A pattern as data: groups of ``group_size`` tokens, the ``variant`` of the shift, and the
    ``pattern`` name. For the grouped patterns (``"s2"``, ``"pattern1"``, ``"pattern2"``) it says which
    heads shift. Hashable, so the fast backends (``kernels/``) cache their index plans by it.

    >>> Grouping(4).first_shifted_head(num_heads=9)  # heads 4..8 take the shifted groups
    4
    """

    group_size: int
    variant: str = "leak_free"
    pattern: str = "s2"

    def first_shifted_head(self, num_heads: int) -> int:
        return first_shifted_head(self.pattern, num_heads)


def first_shifted_head(pattern: str, num_heads: int) -> int:
    """Heads ``[first, H)`` use the shifted groups: ``H // 2`` for S2 (the official code shifts
    ``qkv[:, H//2:]``), 0 for pattern 2 (all heads), H for pattern 1 (none).

    >>> [first_shifted_head(p, 9) for p in ("s2", "pattern1", "pattern2")]
    [4, 9, 0]
    """
    return {"s2": num_heads // 2, "pattern1": num_heads, "pattern2": 0}[pattern]


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not an S2-Attn variant; choose one of {VARIANTS}")


def causal() -> MaskMod:
    """Full causal attention: ``kv <= q``."""

    def mask(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx

    return mask


def sliding_window(window: int) -> MaskMod:
    """transformers' sliding window: a query sees keys less than ``window`` tokens back, ``q - kv < window``.
    Not causal by itself (and-ed with a pattern that is); with S2 it cuts each group to the window.

    >>> dense_mask(sliding_window(2), num_heads=1, length=3)[0].int().tolist()
    [[1, 1, 1], [1, 1, 1], [0, 1, 1]]
    """

    def mask(b, h, q_idx, kv_idx):
        return q_idx - kv_idx < window

    return mask


def pattern1(group_size: int) -> MaskMod:
    """Pattern 1: causal attention inside groups ``[0,G), [G,2G), ...``."""

    def mask(b, h, q_idx, kv_idx):
        return (q_idx // group_size == kv_idx // group_size) & (kv_idx <= q_idx)

    return mask


def _shifted(q_idx, kv_idx, group_size: int, length: int, variant: str):
    """Pattern 2 on index tensors: groups shifted by G/2 (see the module docstring for the variants)."""
    half = group_size // 2
    if variant == "leak_free":
        same = (q_idx + half) // group_size == (kv_idx + half) // group_size
        return same & (kv_idx <= q_idx)
    q_rolled, kv_rolled = (q_idx - half) % length, (kv_idx - half) % length  # position after roll by -G/2
    return (q_rolled // group_size == kv_rolled // group_size) & (kv_rolled <= q_rolled)


def pattern2(group_size: int, length: int, variant: str = "leak_free") -> MaskMod:
    """Pattern 2: causal attention inside groups shifted by G/2 (``leak_free`` or ``paper``)."""
    _check_variant(variant)

    def mask(b, h, q_idx, kv_idx):
        return _shifted(q_idx, kv_idx, group_size, length, variant)

    return mask


def s2(group_size: int, num_heads: int, length: int, variant: str = "leak_free") -> MaskMod:
    """S2-Attn: pattern 1 in heads ``h < H//2``, pattern 2 in heads ``h >= H//2`` (any H, odd too)."""
    _check_variant(variant)
    first = first_shifted_head("s2", num_heads)

    def mask(b, h, q_idx, kv_idx):
        aligned = (q_idx // group_size == kv_idx // group_size) & (kv_idx <= q_idx)
        shifted = _shifted(q_idx, kv_idx, group_size, length, variant)
        return torch.where(h < first, aligned, shifted)

    return mask


def dilated(group_size: int) -> MaskMod:
    """Dilated: segments of 2G, a query sees the same-parity keys of its segment (causal)."""

    def mask(b, h, q_idx, kv_idx):
        same_segment = q_idx // (2 * group_size) == kv_idx // (2 * group_size)
        return same_segment & (q_idx % 2 == kv_idx % 2) & (kv_idx <= q_idx)

    return mask


def block_sparse(group_size: int, num_heads: int) -> MaskMod:
    """Block sparse: half the heads within their block, the other half on the previous block."""

    def mask(b, h, q_idx, kv_idx):
        q_block, kv_block = q_idx // group_size, kv_idx // group_size
        own = (q_block == kv_block) & (kv_idx <= q_idx)
        previous = torch.where(q_block == 0, own, kv_block == q_block - 1)
        return torch.where(h < num_heads // 2, own, previous)

    return mask


def stride_sparse(group_size: int, num_heads: int) -> MaskMod:
    """Stride sparse: half the heads see the last G tokens, the other half every G-th token back."""

    def mask(b, h, q_idx, kv_idx):
        causal_ = kv_idx <= q_idx
        local = causal_ & (q_idx - kv_idx < group_size)
        strided = causal_ & ((q_idx - kv_idx) % group_size == 0)
        return torch.where(h < num_heads // 2, local, strided)

    return mask


def pattern_mask(
    pattern: str, group_size: int, num_heads: int, length: int, variant: str = "leak_free"
) -> MaskMod:
    """The mask function for a pattern name (the ``config.attention_pattern`` values, plus ``"full"``).

    >>> m = dense_mask(pattern_mask("s2", 4, num_heads=2, length=8), num_heads=2, length=8)
    >>> m.shape, int(m[0].sum()), int(m[1].sum())  # pattern 1: 2 groups of 4; pattern 2: 2 + 4 + 2
    (torch.Size([2, 8, 8]), 20, 16)
    """
    if pattern == "s2":
        return s2(group_size, num_heads, length, variant)
    if pattern == "pattern1":
        return pattern1(group_size)
    if pattern == "pattern2":
        return pattern2(group_size, length, variant)
    if pattern == "dilated":
        return dilated(group_size)
    if pattern == "block_sparse":
        return block_sparse(group_size, num_heads)
    if pattern == "stride_sparse":
        return stride_sparse(group_size, num_heads)
    if pattern == "full":
        return causal()
    raise ValueError(f"attention_pattern={pattern!r} is unknown; choose one of {PATTERNS}")


def dense_mask(mask: MaskMod, num_heads: int, length: int, device=None) -> torch.Tensor:
    """Evaluate a mask function on every (head, query, key): a ``(H, L, L)`` bool tensor.

    >>> dense_mask(causal(), num_heads=1, length=3)[0].int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    h = torch.arange(num_heads, device=device)[:, None, None]  # (H, 1, 1)
    q = torch.arange(length, device=device)[None, :, None]  # (1, L, 1)
    kv = torch.arange(length, device=device)[None, None, :]  # (1, 1, L)
    b = torch.zeros((), dtype=torch.long, device=device)
    return mask(b, h, q, kv).expand(num_heads, length, length).contiguous()  # (H, L, L)


def receptive_field(mask: torch.Tensor, layers: int) -> torch.Tensor:
    """Which tokens can influence which after ``layers`` attention layers: an ``(L, L)`` bool matrix.

    ``mask`` is ``(H, L, L)``; a layer mixes the heads, so one layer's reach is the union over heads,
    and ``layers`` layers compose it (boolean matrix power). Row i lists the tokens that reach token i.

    >>> reach = receptive_field(dense_mask(pattern1(4), 1, 8), layers=3)
    >>> [k for k in range(8) if reach[5, k]]  # no shift: information never crosses a group border
    [4, 5]
    """
    one_layer = mask.any(dim=0).float()  # (L, L)
    reach = torch.eye(mask.shape[-1])
    for _ in range(layers):
        reach = (one_layer @ reach).clamp(max=1.0)
    return reach.bool()
