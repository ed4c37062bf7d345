"""benchmarks/gpu_check.py: the dry run end to end, its imports on a bare GPU box, and its verdicts.

The GPU box has torch, transformers, peft, accelerate, safetensors, tokenizers and numpy only. The dry
run goes in a subprocess behind a meta-path finder that raises ImportError when the kit or the script
imports one of the kit's extras, so an extra imported on any path the check takes fails here, not on
the GPU. Imports by the allowed packages themselves pass (transformers needs tqdm and probes for
pandas with ``importlib.util.find_spec``; on the box it copes with what is missing).
"""

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ("correctness", "attention", "train")

BLOCK_EXTRAS = r'''
import sys

EXTRAS = {"plotly", "pandas", "ipywidgets", "anywidget", "gguf", "datasets", "matplotlib", "IPython", "tqdm"}
OWN = ("longlora_kit", "__main__", "gpu_check")  # whose imports of EXTRAS fail


def importer():
    """Module name of the code that asked for the import (skipping importlib's own frames)."""
    frame = sys._getframe(2)
    while frame and (frame.f_code.co_filename.startswith("<frozen") or "importlib" in frame.f_code.co_filename):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame else ""


class BlockExtras:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in EXTRAS and importer().startswith(OWN):
            raise ModuleNotFoundError(f"{name} is not on the GPU box (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockExtras())
'''


def run_blocked(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", BLOCK_EXTRAS + code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_blocker_blocks_and_the_script_module_graph_imports_without_extras():
    code = r'''
import importlib.util, json
for name in ("plotly", "pandas", "gguf"):
    try:
        __import__(name)
        raise SystemExit(f"{name} was not blocked")
    except ModuleNotFoundError:
        pass
spec = importlib.util.spec_from_file_location("gpu_check", "benchmarks/gpu_check.py")
module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("longlora_kit"))))
'''
    done = run_blocked(code)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "longlora_kit.experiments.bench_train" in loaded and "longlora_kit.viz" not in loaded


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The whole dry run, with the extras blocked: (CPU seconds, stdout, json report, markdown)."""
    out = tmp_path_factory.mktemp("gpu_check")
    code = ("import runpy; sys.argv = ['gpu_check.py', '--dry-run', '--out', sys.argv[1]]\n"
            "runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = run_blocked(code, str(out), timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    return cpu_seconds, done.stdout, report, (out / "gpu_check.md").read_text()


def test_dry_run_reports_every_part_with_status_and_budget(dry_run):
    cpu_seconds, stdout, report, md = dry_run
    # CPU time, not wall time: on a shared machine the wall clock says more about the neighbours
    assert cpu_seconds < 60, f"the dry run took {cpu_seconds:.0f} CPU seconds; it must stay a quick CI test"
    assert list(report["parts"]) == list(PARTS)
    for number, name in enumerate(PARTS, 1):
        part = report["parts"][name]
        assert part["status"] == "ok", (name, part.get("reason"))
        assert 0 < part["elapsed_s"] <= part["budget_s"] and part["rows"]
        assert f"== {name}: budget {part['budget_s']} s" in stdout  # printed at the start of the part
        assert f"## {number}. {name}" in md and f"Status: **ok**; budget {part['budget_s']} s" in md


def test_dry_run_checks_backends_and_skips_what_the_cpu_lacks(dry_run):
    rows = dry_run[2]["parts"]["correctness"]["rows"]
    sdpa = [r for r in rows if r["backend"] == "sdpa"]
    # 2 dtypes x 2 variants x 3 head layouts, forward and backward, within tolerance
    assert len(sdpa) == 12 and all(r["status"] == "ok" and r["checked"] == "forward + backward" for r in sdpa)
    assert {(r["variant"], r["heads"]) for r in sdpa} == {(v, h) for v in ("leak_free", "paper")
                                                          for h in ("4/4", "4/2", "9/3")}
    flash = [r for r in rows if r["backend"] == "flash"]
    assert flash == [{"backend": "flash", "status": "skipped", "reason": "flash-attn needs a CUDA GPU"}]
    attention = dry_run[2]["parts"]["attention"]["rows"]
    assert [r["length"] for r in attention] == [256, 512] and all(r["limit"] == 4.0 for r in attention)


def test_dry_run_train_rows_and_goals(dry_run):
    part = dry_run[2]["parts"]["train"]
    assert all(r["status"] == "ok" and r["tokens_per_s"] > 0 and r["peak_gb"] > 0 for r in part["rows"])
    s2 = next(r for r in part["rows"] if r["context"] == 128 and r["attention"] == "s2")
    assert s2["speedup_vs_full"] > 0
    verdicts = [g["verdict"] for g in part["goals"]]
    assert verdicts[:2] != ["not measured"] * 2 and verdicts[2] == "not measured"  # no MFU on a CPU


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_a_wrong_backend_fails_the_correctness_check(monkeypatch):
    gpu_check = load_script()
    real = gpu_check.s2_attention

    def off_by_a_little(q, k, v, backend="sdpa", **kwargs):
        out = real(q, k, v, backend=backend, **kwargs)
        return out if backend == "reference" else out + 1e-3

    monkeypatch.setattr(gpu_check, "s2_attention", off_by_a_little)
    row = gpu_check.check_case("sdpa", torch.float32, "leak_free", 4, 2, gpu_check.DRY_PLAN, torch.device("cpu"))
    assert row["status"] == "failed" and row["max_error"] > row["tolerance"]


def test_goals_verdicts():
    gpu_check = load_script()
    plan = gpu_check.GPU_PLAN
    rows = [dict(context=32768, attention="s2", status="ok", tokens_per_s=1700.0, mfu=0.35),
            dict(context=32768, attention="full", status="ok", tokens_per_s=1000.0),
            dict(context=100_000, attention="s2", status="oom", reason="out of memory")]
    gpu_check.speedups(rows)
    assert [(g["verdict"], g["value"]) for g in gpu_check.goals(rows, plan)] == [
        ("missed", "out of memory"), ("met", "1.70x"), ("missed", "35.0%")]
    nothing = gpu_check.goals([], plan)[0]
    assert (nothing["verdict"], nothing["value"]) == ("not measured", "not run")


def test_a_part_past_its_budget_is_stopped_and_recorded(monkeypatch, tmp_path):
    gpu_check = load_script()

    def slow(plan, device, budget, record):
        record({"length": 1, "status": "ok"})
        time.sleep(60)

    monkeypatch.setitem(gpu_check.PARTS, "attention", slow)
    report = {"mode": "test", "machine": "m", "versions": {}, "started": "now", "budgets": {"attention": 0.3},
              "parts": {"attention": {"status": "pending", "budget_s": 0.3, "elapsed_s": 0.0, "rows": []}}}
    start = time.perf_counter()
    gpu_check.run_part("attention", gpu_check.DRY_PLAN, torch.device("cpu"), report, tmp_path)
    assert time.perf_counter() - start < 30  # the alarm cut the 60 s sleep
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["attention"]
    assert saved["status"] == "partial" and "budget" in saved["reason"] and saved["rows"] == [{"length": 1, "status": "ok"}]


def test_a_train_setting_predicted_past_the_budget_is_skipped_saying_so():
    gpu_check = load_script()

    class Spent:  # after the first setting, nothing is left
        def left(self):
            return 0.0

    plan = gpu_check.dataclasses.replace(gpu_check.DRY_PLAN, train_items=((64, "s2"), (64, "full")))
    rows = []
    gpu_check.part_train(plan, torch.device("cpu"), Spent(), rows.append)
    assert [r["status"] for r in rows] == ["ok", "skipped"]
    assert rows[1]["reason"].startswith("predicted ") and "s left" in rows[1]["reason"]
