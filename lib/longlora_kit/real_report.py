"""``longlora-kit real-eval``: the real model's report, computed cell by cell, resumable.

A *cell* is one measurement of :mod:`longlora_kit.real_eval` with its own key, e.g.
``ppl/python/yarn/16384`` (perplexity by position of YaRN zero-shot over 16384 tokens of Python),
``passkey/extrapolation/8192``, ``s2_step0/2048``, ``s2_train/1024``. Each finished cell is written
at once into the JSON (atomically: a temporary file renamed into place), so a killed run resumes
where it stopped and a cell already in the file is never recomputed. The markdown report is rendered
from the JSON alone. Cheap cells run first.

    longlora-kit real-eval --profile full        # docs/real_model.json + docs/real_model.md
    longlora-kit real-eval --profile smoke --out /tmp/r.json

The LongLoRA cells (method ``longlora``: ``ppl/python/longlora/16384``, ``passkey/longlora/16384`` and
``extension/16384``, the training run's own record) measure a model ``longlora-kit extend`` trained; they
run when ``--extended RUN_DIR`` names that finished run.

>>> [c.key for c in plan("smoke")][:2]
['ppl/python/extrapolation/256', 'ppl/python/pi/256']
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import real_eval
from .profile import current_profile, pick
from .runs.layout import CONFIG_FILE, MODEL_DIR, RESULT_FILE

DEFAULT_OUT = Path("docs/real_model.json")
#: The trained model's method name: the folder ``longlora-kit extend`` wrote (``--extended RUN_DIR``).
TRAINED = "longlora"


@dataclass(frozen=True)
class Cell:
    kind: str            # "ppl", "passkey", "s2_step0", "s2_train", "extension"
    length: int
    method: str = "extrapolation"
    text: str = "python"
    options: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        if self.kind == "ppl":
            return f"ppl/{self.text}/{self.method}/{self.length}"
        if self.kind == "passkey":
            return f"passkey/{self.method}/{self.length}"
        return f"{self.kind}/{self.length}"


def settings(profile: str | None = None) -> dict:
    """Sizes by profile: smoke (CI, seconds), workshop (a few minutes), full (16k; about an hour on 2 cores)."""
    return pick({
        "smoke": dict(ppl_lengths=[256], bucket=128, texts=["python"], passkey_lengths=[256], depths=[0.5],
                      passkey_methods=["extrapolation"], s2_length=256, s2_windows=1, train_length=128,
                      train_steps=2, eval_every=1),
        "workshop": dict(ppl_lengths=[4096], bucket=1024, texts=["python"], passkey_lengths=[2048],
                         depths=[0.1, 0.5, 0.9], passkey_methods=["extrapolation"], s2_length=1024, s2_windows=2,
                         train_length=512, train_steps=10, eval_every=5),
        "full": dict(ppl_lengths=[4096, 8192, 16384], bucket=real_eval.BUCKET, texts=["python", "prose"],
                     passkey_lengths=[2048, 4096, 8192, 16384], depths=[0.1, 0.5, 0.9],
                     passkey_methods=list(real_eval.ZERO_SHOT), s2_length=2048, s2_windows=4, train_length=1024,
                     train_steps=30, eval_every=5),
    }, profile)


def extension_cells(profile: str | None = None) -> list[Cell]:
    """The cells of a model ``longlora-kit extend`` trained to the longest length (``--extended``)."""
    s = settings(profile)
    n = max(s["ppl_lengths"])
    return ([Cell("extension", n, TRAINED)] + [Cell("ppl", n, TRAINED, t) for t in s["texts"]]
            + [Cell("passkey", n, TRAINED)])


def plan(profile: str | None = None) -> list[Cell]:
    """Every cell of a profile, cheapest first (what finishes first is what a killed run keeps)."""
    s = settings(profile)
    short = [n for n in s["ppl_lengths"] if n <= 8192]
    long_ = [n for n in s["ppl_lengths"] if n > 8192]
    cells = [Cell("ppl", n, m, "python") for n in short for m in real_eval.ZERO_SHOT]
    cells += [Cell("passkey", n, "extrapolation") for n in s["passkey_lengths"] if n <= 8192]
    cells += [Cell("s2_step0", s["s2_length"]), Cell("s2_train", s["train_length"])]
    cells += [Cell("ppl", n, m, "python") for n in long_ for m in real_eval.ZERO_SHOT]
    cells += [Cell("passkey", n, m) for n in s["passkey_lengths"] if n > 8192 for m in s["passkey_methods"]]
    cells += [Cell("ppl", n, m, t) for t in s["texts"] if t != "python" for n in long_ or short
              for m in real_eval.ZERO_SHOT]
    # within 8k dynamic NTK *is* the trained RoPE, so its passkey there would repeat extrapolation's
    cells += [Cell("passkey", n, m) for n in s["passkey_lengths"] if n <= 8192 for m in s["passkey_methods"]
              if m not in ("extrapolation", "dynamic")]
    return cells + extension_cells(profile)


# ---------------------------------------------------------------------------------------------
# the JSON file: atomic writes, resume


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (the kit's one helper: ``runs.atomic.write_text``)."""
    from .runs.atomic import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_results(path: str | Path) -> dict:
    """The results file, or a fresh one (``{"cells": {}}``)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"cells": {}}


def machine() -> dict:
    from .utils import cpu_name, environment_report

    report = environment_report()
    return {"cpu": cpu_name(), "cpu threads": report["cpu threads"], "torch": report["torch"],
            "transformers": report["transformers"], "python": report["python"]}


# ---------------------------------------------------------------------------------------------
# running cells


class Runner:
    """Computes cells with one loaded model per RoPE method (loaded lazily, one at a time)."""

    def __init__(self, folder, profile: str | None = None, log=print, extended=None):
        from transformers import AutoTokenizer

        self.folder, self.settings, self.log = Path(folder), settings(profile), log
        self.extended = None if extended is None else Path(extended)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model, self._method = None, None

    def model(self, method: str):
        if self._method != method:
            self._model, self._method = None, None  # free the old one first
            if method == TRAINED:  # its saved config carries the RoPE it was trained with
                self._model = real_eval.load_model(self.extended / MODEL_DIR, "extrapolation")
            else:
                self._model = real_eval.load_model(self.folder, method)
            self._method = method
        return self._model

    def compute(self, cell: Cell, on_record=None) -> dict:
        s, tok = self.settings, self.tokenizer
        if cell.kind == "extension":
            return extension_record(self.extended)
        if cell.kind == "ppl":
            ids = real_eval.text_tokens(cell.text, tok, cell.length)
            return real_eval.perplexity_by_position(self.model(cell.method), ids, s["bucket"])
        if cell.kind == "passkey":
            return real_eval.passkey_cell(self.model(cell.method), tok, cell.length, s["depths"])
        self._model, self._method = None, None
        model = real_eval.load_s2_model(self.folder)
        n = s["s2_windows"] if cell.kind == "s2_step0" else 2
        windows = real_eval.text_tokens("python", tok, n * cell.length).view(n, cell.length)  # (n, L)
        if cell.kind == "s2_step0":
            return {"windows": n, "perplexity": real_eval.attention_mode_perplexity(model, windows)}
        from .data import stdlib_documents

        train_text = "\n\n".join(d for d in stdlib_documents(max_chars=1_000_000) if "class Decimal(" not in d)
        train_ids = torch_tensor(tok(train_text, add_special_tokens=False)["input_ids"])
        history = real_eval.s2_finetune(model, train_ids, windows, cell.length, s["train_steps"],
                                        eval_every=s["eval_every"], log=self.log, on_record=on_record)
        return {"windows": n, "steps": s["train_steps"], "lr": 1e-4, "method": "lora+", "history": history}


def extension_record(run_dir) -> dict:
    """What the extension run was and cost: its settings, per-step losses, time and peak memory."""
    from .train import read_metrics

    run_dir = Path(run_dir)
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    result = json.loads((run_dir / RESULT_FILE).read_text())
    keep = ("seq_len", "target_length", "rope_method", "method", "attention", "group_size_ratio", "lr",
            "warmup_steps", "max_steps", "batch_size", "grad_accum", "data", "lora_r", "lora_alpha",
            "gradient_checkpointing")
    return {"run": run_dir.name, "settings": {k: config[k] for k in keep},
            "losses": [row["loss"] for row in read_metrics(run_dir)],
            "train_seconds": result["seconds"], "tokens": result["tokens"],
            "tokens_per_second": result["tokens_per_second"], "peak_memory_mb": result["peak_memory_mb"],
            "trainable_parameters": result["trainable_parameters"], "total_parameters": result["total_parameters"]}


def check_extended(run_dir) -> Path:
    """``run_dir`` if it holds a finished ``longlora-kit extend`` run, else a clear error."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULT_FILE).is_file() or not (run_dir / MODEL_DIR / "config.json").is_file():
        raise ValueError(f"--extended {run_dir} holds no finished run (no {RESULT_FILE} and {MODEL_DIR}/); "
                         "pass the --out folder of a finished `longlora-kit extend`")
    return run_dir


def torch_tensor(ids):
    import torch

    return torch.tensor(ids, dtype=torch.long)


def run(folder, out: str | Path = DEFAULT_OUT, profile: str | None = None, only=None, log=print,
        extended=None) -> dict:
    """Compute every missing cell of ``profile`` (or those whose key starts with one of ``only``), saving
    the JSON after each, then write the markdown beside it. Returns the results.

    ``extended``: the run folder of ``longlora-kit extend`` for the LongLoRA cells (skipped without it)."""
    profile = current_profile(profile)
    out = Path(out)
    extended = None if extended is None else check_extended(extended)
    results = load_results(out)
    if results.get("profile", profile) != profile:
        raise ValueError(f"{out} holds a {results['profile']!r} run; pass another --out for profile={profile!r}")
    results.update(profile=profile, model=Path(folder).name, machine=machine(), out=str(out))
    runner = None
    for cell in plan(profile):
        if cell.key in results["cells"] or (only and not any(cell.key.startswith(o) for o in only)):
            continue
        if cell.method == TRAINED and extended is None:
            log(f"[real-eval] {cell.key}: skipped (needs --extended RUN_DIR, a finished `longlora-kit extend`)")
            continue
        runner = runner or Runner(folder, profile, log, extended)
        log(f"[real-eval] {cell.key} ...")
        start, load = time.perf_counter(), os.getloadavg()[0]
        def keep_partial(history, key=cell.key):  # the training curve so far, saved as it grows
            results.setdefault("partial", {})[key] = {"history": history}
            write_json(out, results)

        value = runner.compute(cell, keep_partial)
        results.get("partial", {}).pop(cell.key, None)
        value.update(seconds=round(time.perf_counter() - start, 1), load_average=round(load, 2),
                     peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))
        results["cells"][cell.key] = value
        write_json(out, results)
        log(f"[real-eval] {cell.key} done in {value['seconds']} s")
    from .real_markdown import render
    from .runs.atomic import write_text

    write_text(out.with_suffix(".md"), render(results, [c.key for c in plan(profile)]))
    return results
