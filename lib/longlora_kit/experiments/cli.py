"""The experiments' command line: ``longlora-kit reproduce`` and the ``longlora-kit bench`` group.

(Wave 2 gathers every sub-command's argparse in :mod:`longlora_kit.cli`; until then each lives beside
its code and :mod:`longlora_kit.cli` lists :func:`register_bench` and :func:`register_reproduce`.)

>>> default_report_path("smoke", None, "/tmp/cache")
PosixPath('/tmp/cache/smoke/reproduction.md')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..profile import current_profile
from . import bench_attention, bench_real, bench_train
from .execute import DEFAULT_CACHE_DIR, run_experiments
from .report import DEFAULT_REPORT, tally, write_report
from .tables import EXPERIMENT_KEYS


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks measured side by side in one run (train, attention)")
    bench = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    bench_train.register_cli(bench)
    bench_attention.register_cli(bench)
    bench_real.register_cli(bench)


def default_report_path(profile: str, only: Sequence[str] | None, cache_dir: str | Path) -> Path:
    """``docs/reproduction.md`` for a complete full-profile run; otherwise beside the cache, so a smoke or
    partial run never overwrites the committed report."""
    if profile == "full" and not only:
        return DEFAULT_REPORT
    return Path(cache_dir) / profile / "reproduction.md"


def register_reproduce(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="reproduce the paper's key orderings at toy scale (Tables 1, 2, 6, 7, 8, passkey)",
        description="Fine-tune a tiny Llama extended 4x (YaRN) for every arm of the paper's key experiments, with "
        "several seeds, compare the orderings with the paper's and write a markdown report. Results are cached "
        "(JSON per run), so reruns are instant and an interrupted run resumes.",
    )
    p.add_argument("--profile", choices=("smoke", "workshop", "full"), default=None,
                   help="run budget (default: $LONGLORA_KIT_PROFILE or workshop); smoke checks the machinery only")
    p.add_argument("--only", nargs="+", action="extend", metavar="TABLE", choices=EXPERIMENT_KEYS,
                   help=f"run only these experiments: {', '.join(EXPERIMENT_KEYS)}")
    p.add_argument("--cache", default=str(DEFAULT_CACHE_DIR), help="result cache directory (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="report path (a .json of the results is written beside it; default: docs/reproduction.md "
                        "for a complete full-profile run, else CACHE/PROFILE/reproduction.md)")
    p.add_argument("--runner", default=None, help="advanced: 'module:function' to run one spec instead of the toy runner")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes, torch threads split between them (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    profile = current_profile(args.profile)
    results = run_experiments(only=args.only, profile=profile, runner=args.runner, cache_dir=args.cache,
                              progress=not args.no_progress, jobs=args.jobs)
    out = Path(args.out) if args.out else default_report_path(profile, args.only, args.cache)
    report, data = write_report(results, out)
    for experiment in results["experiments"]:
        print(f"{experiment['title']}")
        for c in experiment["claims"]:
            print(f"  {c['outcome']:>14}: {c['text']}")
    counts = tally(results)
    print(f"\n{counts['reproduced']} reproduced, {counts['not reproduced']} not reproduced, "
          f"{counts['undecided']} undecided ({results['runs']['ran']} runs now, {results['runs']['cached']} cached, "
          f"{results['seconds']['compute'] / 60:.1f} min of compute)")
    if not results["claims"]:
        print("smoke profile: the machinery ran; these numbers claim nothing")
    print(f"report: {report}\nresults: {data}")
    return 0
