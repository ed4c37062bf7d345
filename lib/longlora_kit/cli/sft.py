"""``longlora-kit sft``: LongLoRA's supervised fine-tuning on long instructions (``longlora_kit.sft``)."""

from __future__ import annotations

import argparse

GENERATED = "longqa"  # sft_data.GENERATED, spelled out so that --help loads no torch (tests/test_sft.py checks)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "sft", help="fine-tune on long instructions (LongAlpaca-style SFT) with S2-Attn + LoRA+",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="LongLoRA's SFT stage: train only the answers (prompt tokens masked) of LongAlpaca JSON,\n"
        "chat JSONL, or the kit's generated long-document QA mix, at the model's extended context with\n"
        "S2-Attn; batches are right-padded to a multiple of G = group_size_ratio * seq_len.\n\n"
        "example:\n  longlora-kit sft --base runs/extend/model --instructions longqa --out runs/sft",
    )
    p.add_argument("--instructions", default=GENERATED, help=".json / .jsonl / save_to_disk folder, or "
                   f"{GENERATED!r} (default)")
    p.add_argument("--long-fraction", type=float, default=None, help="generated data: share of long QA (0.75)")
    p.add_argument("--out", default="runs/sft", help="run directory (default: %(default)s)")
    _add_run_options(p)
    p.set_defaults(func=run_sft)

    p = subparsers.add_parser(
        "sft-eval", help="exact-match accuracy on held-out long documents before and after SFT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Asks held-out questions about generated documents (fact at each depth, each length)\n"
        "before SFT, then after one SFT run per long fraction (0 = short instructions only: the official\n"
        "tracker's #31); writes OUT/sft_mix.json, and with --record a copy with the command and machine.\n\n"
        "example:\n  longlora-kit sft-eval --base runs/extend/model --fractions 0,0.75 --out runs/sft-eval",
    )
    p.add_argument("--fractions", default="0,0.75", help="long fractions, one SFT run each (default: %(default)s)")
    p.add_argument("--out", default="runs/sft-eval", help="folder of the SFT runs and sft_mix.json (default: %(default)s)")
    _add_run_options(p)
    p.add_argument("--lengths", default=None, help="document lengths to ask about, comma-separated (default: from --seq-len)")
    p.add_argument("--depths", default=None, help="fact depths in [0, 1], comma-separated (default: from the profile)")
    p.add_argument("--trials", type=int, default=None, help="questions per length and depth (default: from the profile)")
    p.add_argument("--record", default=None, help="also write the record, with the command and the machine, here "
                   "(e.g. docs/sft_smollm2.json)")
    p.set_defaults(func=run_sft_eval)


def _add_run_options(p) -> None:
    """The SFT run's options, the same for ``sft`` and ``sft-eval`` (read back by :func:`_overrides`)."""
    p.add_argument("--base", default="runs/extend/model", help="the model to fine-tune, or 'smollm2' for the "
                   "fetched SmolLM2-135M-Instruct (default: %(default)s)")
    p.add_argument("--profile", default=None, help="smoke / workshop / full")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: from the profile)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 5e-4, measured on the tiny Llama)")
    p.add_argument("--seq-len", type=int, default=None, help="longest sample in tokens (default: the base's context)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step (default: from the profile)")
    p.add_argument("--n-documents", type=int, default=None, help="generated training examples (default: from the profile)")
    p.add_argument("--overwrite", action="store_true", help="replace previous kit runs in --out")


def _numbers(text: str, name: str, kind=float) -> list:
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--{name} {text!r}: give comma-separated numbers, e.g. --{name} "
                         f"{'512,1024' if kind is int else '0,0.5,1'}") from None


def _base(name: str) -> str:
    """``--base``: a model folder, or ``smollm2`` for the fetched SmolLM2-135M-Instruct (fetched if missing)."""
    if name == "smollm2":
        from ..real_model import fetch_smollm2

        return str(fetch_smollm2())
    return name


def _overrides(args) -> dict:
    overrides = {"overwrite": args.overwrite}
    for name, field in (("long_fraction", "long_fraction"), ("steps", "max_steps"), ("seq_len", "seq_len"),
                        ("batch_size", "batch_size"), ("n_documents", "n_documents"), ("lr", "lr")):
        if getattr(args, name, None) is not None:
            overrides[field] = getattr(args, name)
    return overrides


def run_sft(args) -> int:
    from ..sft import sft_config, train_sft

    result, report = train_sft(sft_config(_base(args.base), args.out, args.instructions, args.profile, **_overrides(args)))
    print(f"examples: {report['examples']} ({report['long']} long, {report['short']} short); skipped: "
          f"{report['skipped'] or 'none'}; S2 group size: {report['group_size']}")
    print(f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {result.steps} steps; saved to {result.out_dir}/model")
    return 0


def run_sft_eval(args) -> int:
    import json
    import shlex
    import time
    from pathlib import Path

    from ..real_report import machine
    from ..runs import write_text
    from ..sft_eval import mix_effect

    fractions = _numbers(args.fractions, "fractions")
    grid = {"lengths": _numbers(args.lengths, "lengths", int)} if args.lengths else {}
    if args.depths:
        grid["depths"] = _numbers(args.depths, "depths")
    if args.trials is not None:
        grid["trials"] = args.trials
    start = time.perf_counter()
    record = mix_effect(_base(args.base), args.out, fractions, args.profile, grid, **_overrides(args))
    print(f"before SFT: exact match {record['before']['mean']:.2f}, key found {record['before']['key_mean']:.2f}")
    for fraction, after in record["after"].items():
        print(f"after SFT, long fraction {fraction}: exact match {after['mean']:.2f}, key found "
              f"{after['key_mean']:.2f} (loss {after['final_loss']:.3f}, {after['seconds']:.0f} s)")
    if args.record:
        record = {**record, "command": shlex.join(["longlora-kit", *args.argv]), "machine": machine(),
                  "seconds": time.perf_counter() - start, "date": time.strftime("%Y-%m-%d")}
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        write_text(Path(args.record), json.dumps(record, indent=1) + "\n")
        print(f"recorded in {args.record}")
    return 0
