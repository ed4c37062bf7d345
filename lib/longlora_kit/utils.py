"""Small helpers every stage uses: device choice, seeding, notebook set-up, environment report, and
the CPU peak-memory measurement (low level, so training can measure without importing the estimator)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from .profile import current_profile


def get_device(verbose: bool = True) -> torch.device:
    """Pick the best available device: cuda, then mps, then cpu, and say which.

    >>> get_device(verbose=False).type in {"cuda", "mps", "cpu"}
    True
    """
    if torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        print(f"longlora-kit: using device {device.type}")
    return device


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch.Generator seeded the same way.

    Two calls with the same seed give the same random numbers:

    >>> _ = seed_everything(3); a = torch.rand(2)
    >>> _ = seed_everything(3); b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def flash_attn_available() -> bool:
    """True when the optional flash-attn package is importable and a CUDA GPU is present."""
    if not torch.cuda.is_available():
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for benchmark and report headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_peak_cpu(step, static_tensors=()) -> int:
    """Peak CPU bytes of ``step()``, measured by the allocator, plus the bytes of ``static_tensors``.

    PyTorch's profiler with ``profile_memory=True`` records every allocation and free that the c10 CPU
    allocator makes (including buffers inside kernels, which a dispatch-level tracker would miss) as a
    ``[memory]`` event with its signed size. Replaying them in time order gives the live bytes at every
    instant; its maximum is the peak *added* by ``step``. Tensors that already exist (weights, optimizer
    states, gradients from a previous micro-step) are not in the events, so their exact size is added from
    ``static_tensors`` (each storage once). Unlike RSS this ignores malloc caching and the ~300 MB of
    libraries.

    >>> measure_peak_cpu(lambda: torch.empty(1000, dtype=torch.float32), [torch.zeros(10)])  # 4000 + 40
    4040
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        if event.device_type().name == "CPU":
            live += event.nbytes()
            peak = max(peak, live)
    seen, static = set(), 0
    for t in static_tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            static += storage.nbytes()
    return static + peak


def format_table(rows: list[dict]) -> str:
    """Rows of dicts as an aligned text table (the CLI's summaries).

    >>> print(format_table([{"model": "base", "ppl": 3.2}, {"model": "LongLoRA", "ppl": 2.9}]))
    model     ppl
    --------  ---
    base      3.2
    LongLoRA  2.9
    """
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[str(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))
    return "\n".join([line(keys), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, str]:
    """Versions and hardware in one dict (printable, and stable keys for tests)."""
    device = get_device(verbose=False)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "accelerate": _version("accelerate"),
        "longlora-kit": _version("longlora-kit"),
        "device": device.type,
        "gpu": gpu,
        "cpu threads": str(torch.get_num_threads()),
        "flash-attn": "available" if flash_attn_available() else "not available (PyTorch SDPA is used)",
        "profile": current_profile(),
    }


def format_report(report: dict[str, str] | None = None) -> str:
    """The environment report as aligned text lines."""
    report = environment_report() if report is None else report
    width = max(len(k) for k in report)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in report.items())


def setup_notebook(seed: int = 0) -> torch.Generator:
    """Everything a notebook's first cell needs for stable, quiet output.

    Pins plotly's renderer to ``plotly_mimetype`` (JSON only, rendered by JupyterLab's
    plotly extension; stable under nbval), silences Hugging Face download/load bars,
    and seeds everything. Returns the seeded generator.
    """
    import plotly.io as pio
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pio.renderers.default = os.environ.get("PLOTLY_RENDERER", "plotly_mimetype")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    return seed_everything(seed)
