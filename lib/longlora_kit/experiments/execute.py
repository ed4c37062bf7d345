"""Running the experiments: every run they need once, from the cache when it is there, serial or parallel.

:func:`run_experiments` collects the runs of the selected experiments (a run shared by two experiments
counts once), loads those already in the cache, hands the rest to a :class:`~.runner.Runner` (in this
process, or in ``jobs`` spawned worker processes) and turns the records into the results dict the
report renders: per arm the mean and spread over seeds, per claim its verdict.

>>> from .claims import RunSpec
>>> pending = [("k1", RunSpec(), 0, "a"), ("k2", RunSpec(), 1, "b"), ("k3", RunSpec(), 0, "c")]
>>> [[job[0] for job in task] for task in group_tasks(pending, lambda spec, seed: seed)]  # same key, one task
[['k1', 'k3'], ['k2']]
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ..profile import current_profile
from .cache import code_version, load_record, run_key, write_json_atomic
from .claims import CLOSE_MARGIN, K_SE, Experiment, RunSpec, Stats, verdict
from .runner import RunContext, Runner, as_runner
from .tables import EXPERIMENTS, select
from .toy_runner import ToyRunner, settings_for

DEFAULT_CACHE_DIR = Path("runs") / "reproduce-cache"  # relative to where it runs (the repo root for `make`)


def resolve_runner(runner: Runner | Callable | str | None) -> Runner:
    """``None`` = the toy runner; a ``"module:attribute"`` string is imported; a function is wrapped."""
    if runner is None:
        return ToyRunner()
    if isinstance(runner, str):
        module, _, name = runner.partition(":")
        if not name:
            raise ValueError(f"runner={runner!r} must look like 'package.module:function'")
        runner = getattr(importlib.import_module(module), name)
    return as_runner(runner)


def run_experiments(only: Iterable[str] | None = None, profile: str | None = None,
                    runner: Runner | Callable | str | None = None, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                    settings: dict | None = None, code: str | None = None, progress: bool = True, jobs: int = 1,
                    experiments: Sequence[Experiment] = EXPERIMENTS) -> dict:
    """Run (or load from the cache) every run the selected experiments need; return the results dict
    that :func:`~.report.write_report` renders and the notebook plots.

    ``settings`` (default: the toy runner's profile settings) must hold ``seeds``, the number of seeds.
    ``jobs > 1`` runs that many worker processes (``torch`` threads split between them). The runner's
    ``prepare`` runs once before any run; runs with one ``share_key`` go to the same worker, in order.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    profile = current_profile(profile)
    chosen = select(only, experiments)
    settings = dict(settings_for(profile) if settings is None else settings)
    n_seeds = settings.get("seeds")
    if not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"settings['seeds'] must be an int >= 1 (the number of seeds per arm), got {n_seeds!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1 (worker processes), got {jobs!r}")
    seeds = list(range(n_seeds))
    code = code_version() if code is None else code
    runner = resolve_runner(runner)
    directory = Path(cache_dir) / profile
    context = RunContext(profile=profile, settings=settings, cache_dir=directory, code=code, progress=progress)

    wanted: dict[str, tuple[RunSpec, int, str]] = {}  # key -> (spec, seed, first label); shared runs once
    for experiment in chosen:
        for arm in experiment.arms:
            for seed in seeds:
                key = run_key(arm.spec, seed, settings, code)
                wanted.setdefault(key, (arm.spec, seed, f"{experiment.key}: {arm.label}"))
    records = {key: record for key in wanted if (record := load_record(directory / f"{key}.json", key))}
    cached = len(records)
    pending = [(key, *job) for key, job in wanted.items() if key not in records]

    bar = tqdm(total=len(wanted), initial=cached, desc=f"reproduce ({profile})", unit="run", disable=not progress)
    if pending:
        bar.set_postfix_str("preparing")
        runner.prepare(context)  # before any worker starts, so it has every thread to itself
    if jobs == 1 or len(pending) <= 1:
        for key, spec, seed, label in pending:
            bar.set_postfix_str(f"{label} · seed {seed}")
            records[key] = _run_one(runner, key, spec, seed, label, context)
            bar.update(1)
    else:
        records.update(_run_parallel(runner, pending, context, jobs, bar))
    bar.close()

    return {
        "kit": "longlora-kit", "profile": profile, "claims": profile != "smoke",
        "date": _now(), "machine": machine(), "jobs": jobs, "seeds": seeds, "settings": settings, "code": code,
        "rule": {"k": K_SE, "close_margin": CLOSE_MARGIN},
        "runs": {"total": len(wanted), "ran": len(pending), "cached": cached},
        "seconds": {"invocation": time.perf_counter() - started,
                    "compute": sum(r["seconds"] for r in records.values())},
        "experiments": [experiment_result(e, records, seeds, settings, code) for e in chosen],
    }


def experiment_result(experiment: Experiment, records: dict, seeds: list[int], settings: dict, code: str) -> dict:
    """One experiment's part of the results: each arm's stats over the seeds, each claim's verdict."""
    stats: dict[tuple[str, str], Stats] = {}
    arms = []
    for arm in experiment.arms:
        runs = [records[run_key(arm.spec, seed, settings, code)] for seed in seeds]
        ours = {}
        for metric in experiment.metrics:
            s = Stats.of(r["metrics"][metric] for r in runs)
            stats[(arm.label, metric)] = s
            ours[metric] = s.as_dict()
        arms.append({"label": arm.label, "spec": asdict(arm.spec), "paper": dict(arm.paper), "baseline": arm.baseline,
                     "ours": ours, "seconds": sum(r["seconds"] for r in runs)})
    claims = []
    for claim in experiment.claims:
        for side in (claim.a, claim.b):
            if side not in stats:
                raise ValueError(f"claim {claim.text!r} refers to {side}, which experiment {experiment.key} does not measure")
        claims.append({"kind": claim.kind, "a": list(claim.a), "b": list(claim.b), "text": claim.text,
                       "margin": claim.margin, **verdict(claim, stats[claim.a], stats[claim.b])})
    return {"key": experiment.key, "title": experiment.title, "paper_setting": experiment.paper_setting,
            "our_setting": experiment.our_setting, "about": experiment.about, "metrics": list(experiment.metrics),
            "arms": arms, "claims": claims}


def machine() -> dict:
    """Where the numbers were made: CPU model, cores, torch threads, versions."""
    import torch

    from ..utils import cpu_name, environment_report

    cpu = cpu_name()
    env = environment_report()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": env["device"],
            "gpu": env["gpu"], "python": env["python"], "torch": env["torch"], "transformers": env["transformers"],
            "peft": env["peft"], "platform": env["platform"]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------------ serial and parallel

def _run_one(runner: Runner, key: str, spec: RunSpec, seed: int, label: str, context: RunContext) -> dict:
    """Run one spec and store its record atomically under ``context.cache_dir/<key>.json``."""
    t0 = time.perf_counter()
    metrics = runner.run(spec, seed, context)
    missing = [m for m in spec.metrics() if m not in metrics]
    if missing:
        raise ValueError(f"the runner returned no {missing} for {label} (seed {seed}); it returned {sorted(metrics)}")
    record = {"key": key, "label": label, "spec": asdict(spec), "seed": seed, "profile": context.profile,
              "settings": context.settings, "code": context.code, "metrics": {m: float(v) for m, v in metrics.items()},
              "seconds": time.perf_counter() - t0, "finished": _now()}
    write_json_atomic(context.cache_dir / f"{key}.json", record)
    return record


def _run_task(runner: Runner, task: list, context: RunContext) -> list[dict]:
    return [_run_one(runner, key, spec, seed, label, context) for key, spec, seed, label in task]


def _threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def group_tasks(pending: list, share_key: Callable | None = None) -> list[list]:
    """Split pending runs ``(key, spec, seed, label)`` into tasks for the workers: runs with one
    ``share_key(spec, seed)`` (not None) form one task, kept in order; every other run is a task of its own."""
    tasks: dict = {}
    for job in pending:
        shared = share_key(job[1], job[2]) if share_key else None
        tasks.setdefault(job[0] if shared is None else shared, []).append(job)
    return list(tasks.values())


def _run_parallel(runner: Runner, pending: list, context: RunContext, jobs: int, bar) -> dict[str, dict]:
    """``pending`` runs on ``jobs`` spawned processes; runs with one share key stay together, in order."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    tasks = group_tasks(pending, runner.share_key)
    threads = _threads_per_job(jobs)
    records: dict[str, dict] = {}
    context = RunContext(**{**asdict(context), "progress": False})  # one bar: ours
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_run_task, runner, task, context) for task in tasks}
        try:
            while futures:
                done, futures = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    for record in future.result():  # re-raises a worker's error; finished runs stay cached
                        records[record["key"]] = record
                        bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return records
