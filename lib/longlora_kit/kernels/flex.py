"""The ``flex`` backend: FlexAttention with a block mask compiled from the pattern's mask function.

:mod:`longlora_kit.patterns` writes every pattern as a ``mask(b, h, q_idx, kv_idx)`` function;
``create_block_mask`` turns it into a sparse block mask, so only the (query, key) blocks the pattern
touches are computed. Any pattern works, and a padding mask is and-ed in. FlexAttention has no
backward on CPU (torch raises ``NotImplementedError``); ``s2attn.s2_attention`` falls back to the
``sdpa`` backend there, with a warning.
"""

from __future__ import annotations

import functools
import warnings

from ..patterns import Grouping, pattern_mask


def _mask(grouping: Grouping, num_heads: int, length: int):
    return pattern_mask(grouping.pattern, grouping.group_size, num_heads, length, grouping.variant)


@functools.lru_cache(maxsize=16)
def _block_mask(grouping: Grouping, num_heads: int, length: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    mask = _mask(grouping, num_heads, length)
    return create_block_mask(mask, B=None, H=num_heads, Q_LEN=length, KV_LEN=length, device=device)


def attention(q, k, v, grouping: Grouping, *, scaling=None, attention_mask=None):
    """Attention of q (B, H, L, D) over k, v (B, H_kv, L, D) under ``grouping.pattern`` (any pattern
    of :mod:`longlora_kit.patterns`, the ablations too) with FlexAttention; ``attention_mask``:
    optional bool, broadcastable to (B, 1, L, L), True = may attend."""
    from torch.nn.attention.flex_attention import and_masks, create_block_mask, flex_attention

    batch, num_heads, length, _ = q.shape
    device = str(q.device)
    if attention_mask is None:
        block_mask = _block_mask(grouping, num_heads, length, device)
    else:
        padding = attention_mask.expand(batch, 1, length, length)

        def allowed(b, h, q_idx, kv_idx):
            return padding[b, 0, q_idx, kv_idx]

        mask = and_masks(_mask(grouping, num_heads, length), allowed)
        block_mask = create_block_mask(mask, B=batch, H=num_heads, Q_LEN=length, KV_LEN=length, device=device)
    with warnings.catch_warnings():  # eager flex on CPU says it materializes the scores; fine for demos
        warnings.filterwarnings("ignore", message=".*flex_attention.*")
        return flex_attention(q, k, v, block_mask=block_mask, scale=scaling, enable_gqa=k.shape[1] != num_heads)
