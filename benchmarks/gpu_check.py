"""The kit's GPU half in one short run: S2 backends on CUDA, attention speed, ``bench train`` at 7B shape.

    PYTHONPATH=lib python3 benchmarks/gpu_check.py --out build/gpu_check     (``make gpu-check``)
    PYTHONPATH=lib python3 benchmarks/gpu_check.py --dry-run --out /tmp/gc   (CPU, tiny shapes, seconds)

It runs from the repo root without installing the kit, on a machine whose Python has only torch,
transformers, peft, accelerate, safetensors, tokenizers and numpy (no flash-attn, plotly, pandas, gguf):
the kit modules it imports keep their extras inside functions it never calls
(``tests/test_gpu_check.py`` runs the dry run with those extras blocked).

Three parts, each under its own time budget (seconds, sized for one H100-class GPU: 420 s in all,
under 8 minutes with start-up). A part checks its budget before every item and skips the items that
would not fit (saying so); an alarm stops it at its budget (status ``partial``). Anything the machine lacks (no
CUDA, no flash-attn, no FlexAttention backward) is a ``skipped`` row with the reason; out of memory is
recorded and the run goes on. ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` are rewritten
(atomically) after every item, so a run cut short still leaves what it measured.

1. **correctness** (45 s): every S2 backend (``sdpa`` = gather rows, ``flex``, ``flash`` if installed)
   against the readable reference (``s2_attention(..., backend="reference")``), forward and the three
   input gradients, fp32 and bf16, both variants (``leak_free``, ``paper``), MHA, GQA and odd heads.
   The truth is the reference in float64 on the CPU, on the same (rounded) inputs. Tolerance, on the
   largest absolute error of output, dq, dk, dv: ``2 x`` the reference's own error (run on the GPU in
   the same dtype) ``+ 1e-5`` (fp32) or ``+ 1e-2`` (bf16): a backend must be about as exact as the
   readable code on the same device and dtype (whatever TF32 or kernel choice does to both).
2. **attention** (75 s): S2-Attn (``sdpa`` backend, leak-free, G = L/4) vs full causal SDPA, forward +
   backward, bf16, B=1, H=32, D=128, L = 8k, 16k, 32k, 64k (``experiments.bench_attention``): the
   speed-up next to its limit L/G = 4x, the kernel's ceiling and S2's overhead.
3. **train** (300 s): ``experiments.bench_train`` on a Llama-2-7B-shaped LoRA+ model with random
   weights (all 32 layers: MFU needs the real shape), S2 vs full attention at 8k, 16k, 32k, 64k, 100k:
   1 warm-up + 1 timed step each; tokens/s, the allocator's peak vs ``memory.estimate_memory``, MFU by
   Table 11's accounting (``memory.mfu``). The goals (32k and 100k) are measured first; a setting
   whose predicted time (FLOPs at the rate measured so far) exceeds what is left is skipped, saying so.
   Goals: 100k with S2 fits in 80 GB; S2 >= 1.6x full at 32k; >= 40% MFU at 32k (S2). By Table 11's
   FLOPs at 40% MFU on an H100 a 7B step takes ~1 s at 8k, ~5 s (S2) / ~8 s (full) at 32k and ~20 s
   (S2) / ~50 s (full) at 100k, plus building the model each time: 100k with full attention (last in
   the order) will usually not fit in what is left and is reported as skipped, with the prediction.

``--dry-run`` runs all three on the CPU with tiny shapes (the same code paths, the report too).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import platform
import signal
import sys
import time
from pathlib import Path

import torch

from longlora_kit import memory
from longlora_kit.experiments import bench_attention, bench_train
from longlora_kit.experiments.cache import write_atomic
from longlora_kit.s2attn import s2_attention

GOAL_FIT_GB = 80.0
GOAL_SPEEDUP = 1.6
GOAL_MFU = 0.40


@dataclasses.dataclass(frozen=True)
class Plan:
    """Shapes and budgets of one run: the GPU plan, or the dry run's tiny one."""

    budgets: dict  # part -> seconds
    # correctness: (B, L, G, D) and the (query heads, key/value heads) layouts
    check_shape: tuple = (2, 1024, 256, 64)
    head_layouts: tuple = ((8, 8), (8, 2), (9, 3))  # MHA, GQA, odd heads (SmolLM2's 9 / 3)
    # attention speed
    attn_lengths: tuple = (8192, 16384, 32768, 65536)
    attn_heads: int = 32
    attn_head_dim: int = 128
    attn_repeats: int = 3
    # bench train: the preset's shape, optionally narrowed (dry run only), contexts in the order run
    train_shape: dict = dataclasses.field(default_factory=dict)
    train_items: tuple = ((32768, "s2"), (32768, "full"), (100_000, "s2"), (8192, "s2"), (8192, "full"),
                          (16384, "s2"), (16384, "full"), (65536, "s2"), (65536, "full"), (100_000, "full"))
    goal_speed_context: int = 32768
    goal_fit_context: int = 100_000
    steps: int = 1
    warmup: int = 1


GPU_PLAN = Plan(budgets={"correctness": 45, "attention": 75, "train": 300})  # 7 min + start-up <= 8
DRY_PLAN = Plan(budgets={"correctness": 90, "attention": 60, "train": 90},  # generous: CI machines are shared
                check_shape=(2, 32, 8, 16), head_layouts=((4, 4), (4, 2), (9, 3)),
                attn_lengths=(256, 512), attn_heads=4, attn_head_dim=16, attn_repeats=1,
                train_shape={"num_layers": 1, "hidden_size": 256, "vocab_size": 512},
                train_items=((128, "s2"), (128, "full"), (256, "s2"), (64, "s2"), (64, "full")),
                goal_speed_context=128, goal_fit_context=256, warmup=0)


# ----------------------------------------------------------------------------------------- budgets

class PartTimeout(Exception):
    """Raised by the alarm when a part's budget is spent."""


class Budget:
    """Seconds left for one part; ``alarm()`` interrupts the part when they run out (POSIX main thread)."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    @contextlib.contextmanager
    def alarm(self):
        if not hasattr(signal, "setitimer"):
            yield
            return

        def stop(signum, frame):
            raise PartTimeout(f"budget of {self.seconds:.0f} s spent")

        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------ 1. correctness

def _run_attention(inputs, grad, backend, dtype, group, variant, device, backward=True):
    """Output and input gradients of one S2 call, as float64 tensors on the CPU."""
    q, k, v = (x.to(device, dtype, copy=True).requires_grad_(backward) for x in inputs)  # fresh leaves
    with torch.set_grad_enabled(backward):
        out = s2_attention(q, k, v, group_size=group, variant=variant, backend=backend)
        if backward:
            out.backward(grad.to(device, dtype))
    tensors = [out] + ([q.grad, k.grad, v.grad] if backward else [])
    return [t.detach().to("cpu", torch.float64, copy=True) for t in tensors]


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _max_error(got, truth) -> float:
    return max((a - b).abs().max().item() for a, b in zip(got, truth))


ATOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def check_case(backend, dtype, variant, heads, kv_heads, plan, device) -> dict:
    """One backend on one setting: its largest error against the truth (the readable reference in float64
    on the CPU) may be at most twice the reference's own error, run here in ``dtype``, plus ``ATOL``."""
    batch, length, group, dim = plan.check_shape
    gen = torch.Generator().manual_seed(0)
    shapes = [(batch, heads, length, dim), (batch, kv_heads, length, dim), (batch, kv_heads, length, dim)]
    inputs = [torch.randn(s, generator=gen).to(dtype).double() for s in shapes]  # rounded to dtype once
    grad = torch.randn(batch, heads, length, dim, generator=gen).to(dtype).double()
    # FlexAttention has no backward on CPU (the kit falls back to sdpa there): check its forward only
    backward = not (backend == "flex" and device.type == "cpu")
    row = dict(backend=backend, dtype=_name(dtype), variant=variant,
               heads=f"{heads}/{kv_heads}", checked="forward + backward" if backward else "forward only")
    cpu = torch.device("cpu")
    truth = _run_attention(inputs, grad, "reference", torch.float64, group, variant, cpu, backward)
    own = _max_error(_run_attention(inputs, grad, "reference", dtype, group, variant, device, backward), truth)
    error = _max_error(_run_attention(inputs, grad, backend, dtype, group, variant, device, backward), truth)
    tolerance = 2 * own + ATOL[dtype]
    row.update(max_error=error, reference_error=own, tolerance=tolerance,
               status="ok" if error <= tolerance else "failed")
    if not backward:
        row["note"] = "no FlexAttention backward on CPU"
    return row


def backend_missing(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    if backend == "flash":
        if device.type != "cuda":
            return "flash-attn needs a CUDA GPU"
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "flash-attn is not installed"
    if backend == "flex":
        try:
            from torch.nn.attention import flex_attention  # noqa: F401
        except ImportError:
            return f"torch {torch.__version__} has no FlexAttention"
    return None


def part_correctness(plan, device, budget, record) -> None:
    for backend in ("sdpa", "flex", "flash"):
        reason = backend_missing(backend, device)
        if reason:
            record(dict(backend=backend, status="skipped", reason=reason))
            continue
        for dtype in (torch.float32, torch.bfloat16):
            if backend == "flash" and dtype == torch.float32:
                record(dict(backend=backend, dtype="float32", status="skipped", reason="flash-attn is fp16/bf16 only"))
                continue
            for variant in ("leak_free", "paper"):
                for heads, kv_heads in plan.head_layouts:
                    try:
                        record(check_case(backend, dtype, variant, heads, kv_heads, plan, device))
                    except NotImplementedError as err:  # e.g. no FlexAttention backward on this build
                        record(dict(backend=backend, dtype=_name(dtype), variant=variant, status="skipped",
                                    reason=f"NotImplementedError: {err}"[:300]))
                    except (RuntimeError, ValueError) as err:
                        record(dict(backend=backend, dtype=_name(dtype), variant=variant, heads=f"{heads}/{kv_heads}",
                                    status="failed", reason=f"{type(err).__name__}: {err}"[:300]))


# --------------------------------------------------------------------------------------- 2. attention

def part_attention(plan, device, budget, record) -> None:
    for length in plan.attn_lengths:
        try:
            (row,) = bench_attention.attention_benchmark([length], plan.attn_repeats, plan.attn_heads,
                                                         plan.attn_head_dim, device=device, verbose=True)
            row.update(limit=4.0, status="ok")
        except torch.OutOfMemoryError:
            row = dict(length=length, status="oom", reason="out of memory")
        except (RuntimeError, ValueError) as err:
            row = dict(length=length, status="failed", reason=f"{type(err).__name__}: {err}"[:300])
        release_memory(device)
        record(row)


# ------------------------------------------------------------------------------------------- 3. train

def part_train(plan, device, budget, record) -> None:
    config = bench_train.bench_config("llama2-7b", **plan.train_shape)
    flops_per_s, build_s = None, 0.0  # model FLOP/s and build seconds so far (first item: no prediction)
    for context, attention in plan.train_items:
        step_flops = memory.step_flops(config, context, attention)["model"]
        runs = plan.warmup + plan.steps
        if flops_per_s:
            predicted = 1.2 * runs * step_flops / flops_per_s + build_s
            if predicted > budget.left():
                record(dict(context=context, attention=attention, status="skipped",
                            reason=f"predicted {predicted:.0f} s ({runs} steps + build) > {budget.left():.0f} s left"))
                continue
        start = time.perf_counter()
        try:
            row = bench_train.train_step_benchmark(config, context, "lora+", attention, steps=plan.steps,
                                                   warmup=plan.warmup, device=device)
        except (RuntimeError, ValueError) as err:  # one setting's failure must not cost the others
            row = dict(context=context, attention=attention, status="failed", reason=f"{type(err).__name__}: {err}"[:300])
        release_memory(device)
        if row.get("oom"):
            row.update(status="oom", reason="out of memory")
        elif row.get("status") != "failed":
            flops_per_s = step_flops / row["step_s"]
            build_s = max(time.perf_counter() - start - runs * row["step_s"], 0.0)
            row.update(status="ok", build_s=build_s)
        record(row)


def speedups(rows: list[dict]) -> None:
    """S2's tokens/s over full attention's at the same context, on the S2 rows."""
    full = {r["context"]: r for r in rows if r.get("attention") == "full" and r.get("status") == "ok"}
    for r in rows:
        if r.get("attention") == "s2" and r.get("status") == "ok" and r["context"] in full:
            r["speedup_vs_full"] = r["tokens_per_s"] / full[r["context"]]["tokens_per_s"]


def goals(rows: list[dict], plan) -> list[dict]:
    """The three goals of issue 19, each met / missed / not measured."""
    def find(context, attention):
        return next((r for r in rows if r.get("context") == context and r.get("attention") == attention), None)

    fit, s2 = find(plan.goal_fit_context, "s2"), find(plan.goal_speed_context, "s2")
    checks = [
        (f"{plan.goal_fit_context} tokens, S2: allocator peak <= {GOAL_FIT_GB:.0f} GB", fit, "peak_gb",
         lambda x: x <= GOAL_FIT_GB, "{:.1f} GB"),
        (f"{plan.goal_speed_context} tokens: S2 >= {GOAL_SPEEDUP}x full attention (tokens/s)", s2,
         "speedup_vs_full", lambda x: x >= GOAL_SPEEDUP, "{:.2f}x"),
        (f"{plan.goal_speed_context} tokens, S2: MFU >= {GOAL_MFU:.0%}", s2, "mfu", lambda x: x >= GOAL_MFU, "{:.1%}"),
    ]
    out = []
    for goal, row, key, ok, fmt in checks:
        value = None if row is None else row.get(key)
        if row is not None and row.get("status") == "oom" and key == "peak_gb":
            out.append(dict(goal=goal, verdict="missed", value="out of memory"))
        elif value is None:
            why = "not run" if row is None else row.get("reason") or f"no {key} on this device"
            out.append(dict(goal=goal, verdict="not measured", value=why))
        else:
            out.append(dict(goal=goal, verdict="met" if ok(value) else "missed", value=fmt.format(value)))
    return out


# ------------------------------------------------------------------------------------------- report

def machine(device: torch.device) -> str:
    text = bench_attention.machine_description(device)
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_properties(device).total_memory / 1e9:.0f} GB"
    return text


def versions() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__,
             "cuda": torch.version.cuda or "none"}
    for name in ("transformers", "peft", "accelerate", "safetensors", "tokenizers", "numpy", "flash-attn"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


FORMATS = {"max_error": "{:.1e}", "reference_error": "{:.1e}", "tolerance": "{:.1e}", "full_ms": "{:.1f}", "s2_ms": "{:.1f}", "ratio": "{:.2f}x",
           "limit": "{:.0f}x", "ceiling": "{:.2f}x", "overhead": "{:+.0%}", "tokens_per_s": "{:.0f}",
           "speedup_vs_full": "{:.2f}x", "peak_gb": "{:.2f}", "predicted_gb": "{:.2f}", "mfu": "{:.1%}",
           "step_s": "{:.2f}", "build_s": "{:.1f}"}


def _cell(value, column: str = "") -> str:
    if isinstance(value, float) and value == value:  # not NaN
        return FORMATS.get(column, "{:.3g}").format(value)
    return "–" if value is None else str(value).replace("|", "/")


COLUMNS = {
    "correctness": ["backend", "dtype", "variant", "heads", "checked", "max_error", "reference_error", "tolerance", "status",
                    "note",
                    "reason"],
    "attention": ["length", "group", "full_ms", "s2_ms", "ratio", "limit", "ceiling", "overhead", "status", "reason"],
    "train": ["context", "attention", "kernel", "tokens_per_s", "speedup_vs_full", "peak_gb", "predicted_gb",
              "mfu", "step_s", "build_s", "status", "reason"],
}


def describe(plan: Plan, device: torch.device) -> dict:
    """One line per part for the report: what was measured, how, and the yardstick."""
    batch, length, group, dim = plan.check_shape
    dtype = "bf16" if device.type == "cuda" else "fp32"
    return {
        "correctness": "Each backend vs the truth, `s2_attention(..., backend=\"reference\")` in float64 on "
                       f"the CPU, on the same rounded inputs: output, dq, dk, dv; B={batch}, L={length}, G={group}, D={dim}, heads (query/kv) "
                       f"{', '.join(f'{h}/{kv}' for h, kv in plan.head_layouts)}. Tolerance on the largest absolute "
                       "error: 2 x reference_error (the reference run here in the same dtype) + 1e-5 (fp32) "
                       "or + 1e-2 (bf16).",
        "attention": f"S2-Attn (`sdpa` backend = gather rows, leak-free, G = L/4) vs full causal SDPA, forward + "
                     f"backward, {dtype}, B=1, H={plan.attn_heads}, D={plan.attn_head_dim}, median of "
                     f"{plan.attn_repeats} interleaved repeats after a warm-up. Limit: L/G = 4x; ceiling = full / "
                     "SDPA on the pre-gathered groups; overhead = S2 / groups - 1.",
        "train": f"`bench train`, LoRA+, random weights, {plan.warmup} warm-up + {plan.steps} timed step(s) per "
                 "setting, gradient checkpointing, chunked loss. peak_gb: the allocator's peak; predicted_gb: "
                 "`memory.estimate_memory`; MFU = tokens/s x 3 x forward FLOPs (Table 11, whole blocks) / "
                 "peak bf16 FLOP/s. speedup_vs_full: S2 tokens/s over full attention's at the same context.",
    }


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['mode']})", "", f"Machine: {report['machine']}.  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".  ",
             f"Started {report['started']}; budgets {report['budgets']} s "
             f"(total {sum(report['budgets'].values())} s plus start-up)"
             + (f"; the parts took {report['total_s']} s." if "total_s" in report else "."), ""]
    for number, (name, part) in enumerate(report["parts"].items(), 1):
        lines += [f"## {number}. {name}", "",
                  f"Status: **{part['status']}**; budget {part['budget_s']} s; took {part['elapsed_s']:.1f} s."
                  + (f" {part['reason']}" if part.get("reason") else ""), "", part.get("about", ""), ""]
        rows = part["rows"]
        if rows:
            columns = [c for c in COLUMNS[name] if any(c in r for r in rows)]
            lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_cell(r.get(c), c) for c in columns) + " |" for r in rows]
            lines.append("")
        if part.get("goals"):
            lines += ["| goal | verdict | value |", "|---|---|---|"]
            lines += [f"| {g['goal']} | **{g['verdict']}** | {g['value']} |" for g in part["goals"]]
            lines.append("")
    return "\n".join(lines)


def save(report: dict, out: Path) -> None:
    write_atomic(out / "gpu_check.json", json.dumps(report, indent=1, default=str) + "\n")
    write_atomic(out / "gpu_check.md", markdown(report))


# --------------------------------------------------------------------------------------------- main

PARTS = {"correctness": part_correctness, "attention": part_attention, "train": part_train}


def run_part(name, plan, device, report, out) -> None:
    part = report["parts"][name]
    budget = Budget(part["budget_s"])
    print(f"== {name}: budget {part['budget_s']} s", flush=True)

    def record(row):
        part["rows"].append(row)
        if name == "train":
            speedups(part["rows"])
            part["goals"] = goals(part["rows"], plan)
        print(f"   {name}: " + ", ".join(f"{k}={_cell(v, k)}" for k, v in row.items()), flush=True)
        part["elapsed_s"] = budget.seconds - budget.left()
        save(report, out)

    part["status"] = "running"
    try:
        with budget.alarm():
            PARTS[name](plan, device, budget, record)
        statuses = {r.get("status") for r in part["rows"]}
        part["status"] = "failed" if "failed" in statuses else "ok"
    except PartTimeout as err:
        part.update(status="partial", reason=f"stopped: {err}")
    except Exception as err:  # noqa: BLE001  (one part's crash must not cost the others)
        part.update(status="error", reason=f"{type(err).__name__}: {err}"[:500])
    release_memory(device)
    if name == "train":
        part["goals"] = goals(part["rows"], plan)
    part["elapsed_s"] = budget.seconds - budget.left()
    save(report, out)
    print(f"== {name}: {part['status']} in {part['elapsed_s']:.1f} s (budget {part['budget_s']} s)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="build/gpu_check", help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: every code path in seconds")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    if unknown := set(parts) - set(PARTS):
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {list(PARTS)}")

    cuda = torch.cuda.is_available() and not args.dry_run
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 checks mean fp32
    mode = "GPU" if cuda else "dry run (CPU, tiny shapes)" if args.dry_run else "no GPU: nothing run"
    report = {"mode": mode,
              "machine": machine(device), "versions": versions(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "budgets": {n: plan.budgets[n] for n in parts},
              "plan": dataclasses.asdict(plan),
              "parts": {n: {"status": "pending", "budget_s": plan.budgets[n], "elapsed_s": 0.0,
                            "about": describe(plan, device)[n], "rows": []} for n in parts}}
    if not cuda and not args.dry_run:
        for part in report["parts"].values():
            part.update(status="skipped", reason="no CUDA GPU here (torch.cuda.is_available() is False); "
                        "--dry-run runs the same code on the CPU with tiny shapes")
        parts = []
    out = Path(args.out)
    save(report, out)
    print(f"gpu check ({report['mode']}): {report['machine']}; budgets (s): {report['budgets']}", flush=True)
    start = time.perf_counter()
    for name in parts:
        run_part(name, plan, device, report, out)
    report["total_s"] = round(time.perf_counter() - start, 1)  # the parts; start-up (imports, CUDA) comes on top
    save(report, out)
    print(f"parts took {report['total_s']} s in all; wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
