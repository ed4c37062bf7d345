"""``longlora-kit bench attention``: S2-Attn vs full causal attention, forward + backward, side by side.

Both are timed in the same process on the same inputs, repeats interleaved (full, S2, groups, full, ...)
so that a busy machine slows all alike; the medians give the ratio ``full / S2``. The limit is
``L / G = 4`` (attention FLOPs fall by that much); two things eat into it, and the third timing,
"groups", tells them apart: SDPA alone on the groups S2 builds, gathered beforehand (the same kernel
calls, none of S2's copies).

- ``ceiling = full / groups``: the best any S2 built on this SDPA kernel can do here. On CPU it is
  well under 4 at short lengths, because the kernel computes causal attention in blocks of
  512 keys and the last block of every row is partly masked: within a group of G = 1024 tokens
  that is 1.5x the needed work, within the full 4096-token sequence only 1.125x.
- ``overhead = S2 / groups - 1``: what S2's gather, scatter and second (half-group) call cost.

CPU: fp32, B=1, H=8, D=64, G=L/4. GPU (when available): bf16, up to 64k tokens.

    longlora-kit bench attention --lengths 2048,4096,8192,16384 --repeats 5
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..s2attn import group_size_for, s2_attention
from ..utils import cpu_name
from .cache import write_atomic

CPU_LENGTHS = (2048, 4096, 8192, 16384)
GPU_LENGTHS = (8192, 16384, 32768, 65536)
SECTION = "bench attention"


def machine_description(device: torch.device) -> str:
    """CPU model (or GPU name), threads and torch version, for the results table."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _inputs(length, heads, head_dim, dtype, device, seed=0):
    """q, k, v like transformers hands them over: (B, H, L, D) views of (B, L, H, D) memory."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    made = [torch.randn(1, length, heads, head_dim, generator=g).to(device, dtype).transpose(1, 2) for _ in range(4)]
    q, k, v = (x.requires_grad_() for x in made[:3])
    return q, k, v, made[3]  # the last one is the output gradient


def groups_of(x: torch.Tensor, group: int) -> list[torch.Tensor]:
    """The token groups leak-free S2 attends within, by plain slicing and reshaping: ``x (B, H, L, D)`` ->
    ``[(B, N, G, D), (B, H, G/2, D)]``. Heads ``h < H/2`` give groups ``[0, G), [G, 2G), ...``; heads
    ``h >= H/2`` the groups shifted by ``G/2``, whose two half-groups at the ends go in the second tensor.

    >>> full, halves = groups_of(torch.arange(8.).expand(1, 2, 8).unsqueeze(-1), group=4)
    >>> full[0, :, :, 0].tolist(), halves[0, :, :, 0].tolist()
    ([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [2.0, 3.0, 4.0, 5.0]], [[0.0, 1.0], [6.0, 7.0]])
    """
    batch, heads, length, dim = x.shape
    half, shift = heads // 2, group // 2
    plain = x[:, :half].reshape(batch, half * (length // group), group, dim)  # (B, H/2 * L/G, G, D)
    shifted = x[:, half:, shift:length - shift].reshape(batch, -1, group, dim)  # (B, H/2 * (L/G - 1), G, D)
    ends = torch.cat([x[:, half:, :shift], x[:, half:, length - shift:]], dim=1)  # (B, H, G/2, D)
    return [torch.cat([plain, shifted], dim=1), ends]


def _pregathered_groups(q, k, v, group):
    """The (q, k, v) of every group S2 (leak-free) attends within, gathered once, as leaf tensors:
    one triple of (B, N, size, D) per group size, and an output gradient for each."""
    if not q.shape[1] == k.shape[1] == v.shape[1]:
        raise ValueError("the pre-gathered groups are for equal head counts (the benchmark's MHA), "
                         f"got q {q.shape[1]}, k {k.shape[1]}, v {v.shape[1]} heads")
    with torch.no_grad():
        qs, ks, vs = (groups_of(x, group) for x in (q, k, v))
    triples = [tuple(x.contiguous().requires_grad_() for x in xs) for xs in zip(qs, ks, vs)]
    return triples, [torch.randn_like(t[0]) for t in triples]


def _causal_sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _step(attention, q, k, v, grad_out) -> None:
    """Forward + backward of one attention call; gradients cleared for the next repeat."""
    attention(q, k, v).backward(grad_out)
    q.grad = k.grad = v.grad = None


def _groups_step(triples, grad_outs) -> None:
    """S2's kernel work without its copies: causal SDPA on each group size, gathered beforehand."""
    for (qg, kg, vg), grad in zip(triples, grad_outs):
        _step(_causal_sdpa, qg, kg, vg, grad)


def _timed(step, device) -> float:
    """Seconds one call of ``step()`` takes (waiting for the GPU on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def attention_benchmark(lengths=None, repeats: int = 5, heads: int = 8, head_dim: int = 64, ratio: float = 0.25,
                        device=None, backend: str = "sdpa", verbose: bool = True) -> list[dict]:
    """Median forward+backward milliseconds of full causal SDPA, of S2-Attn and of SDPA alone on S2's
    pre-gathered groups at each length; the speed-up, the kernel's ceiling and S2's overhead (module doc)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    lengths = lengths or (GPU_LENGTHS if device.type == "cuda" else CPU_LENGTHS)
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    rows = []
    for length in lengths:
        group = group_size_for(length, ratio)  # ValueError with the nearest valid length
        q, k, v, grad_out = _inputs(length, heads, head_dim, dtype, device)
        triples, group_grads = _pregathered_groups(q, k, v, group)
        s2 = functools.partial(s2_attention, group_size=group, variant="leak_free", backend=backend)
        steps = {
            "full": functools.partial(_step, _causal_sdpa, q, k, v, grad_out),
            "s2": functools.partial(_step, s2, q, k, v, grad_out),
            "groups": functools.partial(_groups_step, triples, group_grads),
        }
        for step in steps.values():  # warm-up (allocator, kernels, index plans)
            _timed(step, device)
        times = {name: [] for name in steps}
        for _ in range(repeats):  # interleaved: all three see the same machine load
            for name, step in steps.items():
                times[name].append(_timed(step, device))
        full, s2, groups = (statistics.median(times[name]) for name in ("full", "s2", "groups"))
        row = {"length": length, "group": group, "heads": heads, "head_dim": head_dim, "full_ms": 1000 * full, "s2_ms": 1000 * s2, "ratio": full / s2,
               "groups_ms": 1000 * groups, "ceiling": full / groups, "overhead": s2 / groups - 1,
               "spread": max(max(t) / min(t) for t in times.values())}
        rows.append(row)
        if verbose:
            print(f"L={length:>6}  G={group:>5}  full {row['full_ms']:9.1f} ms   S2 {row['s2_ms']:9.1f} ms   "
                  f"ratio {row['ratio']:.2f}x   groups alone {row['groups_ms']:9.1f} ms (ceiling "
                  f"{row['ceiling']:.2f}x, S2 overhead {row['overhead']:+.0%})   max/min {row['spread']:.2f}", flush=True)
    return rows


def markdown_section(rows, device, repeats, backend="sdpa", note="") -> str:
    device = torch.device(device)
    dtype = "bf16" if device.type == "cuda" else "fp32"
    shapes = sorted({(r["heads"], r["head_dim"]) for r in rows}) or [("?", "?")]
    shape = ", ".join(f"H={h}, D={d}" for h, d in shapes)
    lines = [
        f"<!-- {SECTION} {device.type}: start -->",
        f"## S2-Attn vs full causal attention, forward + backward ({device.type})",
        "",
        f"`longlora-kit bench attention`: B=1, {shape}, G=L/4, {dtype}, "
        f"S2 backend `{backend}` (leak-free), median of {repeats} interleaved repeats. Limit: L/G = 4x. "
        "*Groups alone*: SDPA on S2's groups gathered beforehand; *ceiling* = full / groups alone, the best an "
        "S2 on this kernel can reach; *overhead* = S2 / groups alone - 1 (gather, scatter, half-group call).",
        f"Machine: {machine_description(device)}.{(' ' + note) if note else ''}",
        "",
        "| L | G | full causal (ms) | S2-Attn (ms) | speed-up | groups alone (ms) | ceiling | S2 overhead "
        "| max/min over repeats |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['length']} | {r['group']} | {r['full_ms']:.1f} | {r['s2_ms']:.1f} | "
                     f"**{r['ratio']:.2f}x** | {r['groups_ms']:.1f} | {r['ceiling']:.2f}x | {r['overhead']:+.0%} | "
                     f"{r['spread']:.2f} |")
    lines.append(f"<!-- {SECTION} {device.type}: end -->")
    return "\n".join(lines) + "\n"


def write_section(path, section: str, device) -> None:
    """Put our section into ``path`` (created with a header), replacing an earlier run of the same kind."""
    path = Path(path)
    kind = torch.device(device).type
    start, end = f"<!-- {SECTION} {kind}: start -->", f"<!-- {SECTION} {kind}: end -->"
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nSpeed ratios measured side by side in one run, with the machine they ran on. "
        "Each section is written by its benchmark command.\n\n")
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_atomic(path, text)


