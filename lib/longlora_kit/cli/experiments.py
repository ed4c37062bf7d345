"""``longlora-kit reproduce`` (the paper's orderings at toy scale) and ``longlora-kit bench`` (train, attention)."""

from __future__ import annotations

import os
from pathlib import Path

from ..experiments.execute import DEFAULT_CACHE_DIR
from ..experiments.tables import EXPERIMENT_KEYS


def add_commands(subparsers) -> None:
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
    p.set_defaults(func=run_reproduce)

    bench = subparsers.add_parser("bench", help="benchmarks measured side by side in one run (train, attention)")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    p = benchmarks.add_parser("train", help="LoRA+ with S2-Attn vs full attention: tokens/s, peak "
                              "memory, MFU at 8k..100k on a Llama-2-7B-shaped model (random weights)")
    p.add_argument("--preset", default="llama2-7b", help="whose shape to build (default llama2-7b)")
    p.add_argument("--contexts", default=None, help="comma-separated context lengths, each a multiple of 4 "
                   "(default: bench_train.DEFAULT_CONTEXTS, 8192 to 100000)")
    p.add_argument("--num-layers", type=int, default=None, help="override the layer count (narrow runs)")
    p.add_argument("--hidden-size", type=int, default=None, help="override the width (keeps head_dim)")
    p.add_argument("--vocab-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per setting")
    p.add_argument("--loss-chunk", type=int, default=2048)
    p.add_argument("--append", default=None, help="append the markdown table to this file (docs/benchmarks.md)")
    p.set_defaults(func=run_bench_train)

    p = benchmarks.add_parser("attention", help="S2-Attn vs full causal attention: forward+backward time "
                              "and ratio at 2k..16k (CPU fp32) or 8k..64k (GPU bf16)")
    p.add_argument("--lengths", default=None,
                   help="comma-separated sequence lengths (default CPU 2048,4096,8192,16384; GPU 8192..65536)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per method and length (default 5)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--backend", default="sdpa", choices=["sdpa", "flash", "flex"], help="S2 backend (default sdpa)")
    p.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update ('-' to only print)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--note", default="", help="a sentence added under the table (e.g. machine load)")
    p.set_defaults(func=run_bench_attention)

    p = benchmarks.add_parser("real", help="one LoRA+ step of the real SmolLM2-135M: S2-Attn vs full "
                              "attention at 2k/4k/8k, beside the FLOP model's limit")
    p.add_argument("--contexts", default="2048,4096,8192", help="comma-separated lengths (default %(default)s)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per setting (default 1)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the profiled step that measures peak memory")
    p.add_argument("--model", default=None, help="model folder (default: the fetched SmolLM2)")
    p.add_argument("--append", default=None, help="append the markdown table to this file (docs/benchmarks.md)")
    p.set_defaults(func=run_bench_real)


def run_reproduce(args) -> int:
    from ..experiments.execute import run_experiments
    from ..experiments.report import default_report_path, tally, write_report
    from ..profile import current_profile

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


def run_bench_train(args) -> int:
    from ..experiments.bench_train import DEFAULT_CONTEXTS, bench_config, markdown_table, train_benchmark

    contexts = tuple(int(c) for c in args.contexts.split(",") if c.strip()) if args.contexts else DEFAULT_CONTEXTS
    config = bench_config(args.preset, args.num_layers, args.hidden_size, args.vocab_size)
    rows = train_benchmark(config, contexts, steps=args.steps, warmup=args.warmup, loss_chunk=args.loss_chunk)
    shape = (f"{args.preset} shape ({config.num_hidden_layers} layers, width {config.hidden_size}, "
             f"vocab {config.vocab_size}), LoRA+, random weights")
    table = markdown_table(rows, shape)
    print(table)
    if args.append:
        path = Path(args.append)
        with path.open("a") as f:
            f.write("\n" + table)
        print(f"appended to {path}")
    return 0


def run_bench_attention(args) -> int:
    import torch

    from ..experiments.bench_attention import attention_benchmark, markdown_section, write_section

    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else None
    rows = attention_benchmark(lengths, args.repeats, device=args.device, backend=args.backend)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    section = markdown_section(rows, device, args.repeats, args.backend, args.note)
    print(section)
    if args.output != "-":
        write_section(args.output, section, device)
        print(f"wrote the table to {args.output}")
    return 0


def run_bench_real(args) -> int:
    from ..experiments.bench_real import markdown_table, real_benchmark
    from ..experiments.bench_train import machine_description
    from ..real_model import fetch_smollm2

    folder = args.model or fetch_smollm2()
    contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    rows = real_benchmark(folder, contexts, steps=args.steps, warmup=args.warmup, memory=not args.no_memory,
                          log=lambda m: print(m, flush=True))
    table = markdown_table(rows, machine_description())
    print(table)
    if args.append:
        with Path(args.append).open("a") as f:
            f.write("\n" + table)
    return 0
