"""The ``flash`` backend: S2's groups packed back to back for flash-attn's variable-length kernel.

The same gather as :mod:`.rows`; then every group of every batch row is one "sequence" of a packed
``(rows, 1, D)`` tensor, with ``cu_seqlens`` (cumulative lengths) at the group borders, and
``flash_attn_varlen_func(..., causal=True)`` attends causally inside each. Needs the flash-attn
package, a CUDA GPU and fp16/bf16 tensors. ``varlen_attention`` takes the kernel as an argument, so
the packing is tested on CPU with a plain reference kernel.
"""

from __future__ import annotations

import torch

from ..patterns import Grouping
from .rows import grouped


def varlen_attention(q, k, v, grouping: Grouping, varlen_kernel, *, scaling=None, dropout: float = 0.0):
    """Pack every group back to back, ``cu_seqlens`` at the group borders, and run a flash-attn-style
    ``varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=, softmax_scale=, causal=)``."""
    batch, dim = q.shape[0], q.shape[-1]
    (qs, ks, vs), scatter = grouped(q, k, v, grouping)

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


def attention(q, k, v, grouping: Grouping, *, scaling=None, dropout: float = 0.0):
    """S2-Attn with flash-attn's varlen kernel; a clear ``ValueError`` where it cannot run."""
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
    return varlen_attention(q, k, v, grouping, flash_attn_varlen_func, scaling=scaling, dropout=dropout)
