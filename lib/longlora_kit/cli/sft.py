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
    p.add_argument("--base", default="runs/extend/model", help="the model to fine-tune (default: %(default)s)")
    p.add_argument("--instructions", default=GENERATED, help=".json / .jsonl / save_to_disk folder, or "
                   f"{GENERATED!r} (default)")
    p.add_argument("--long-fraction", type=float, default=None, help="generated data: share of long QA (0.75)")
    p.add_argument("--out", default="runs/sft", help="run directory (default: %(default)s)")
    p.add_argument("--profile", default=None, help="smoke / workshop / full")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: from the profile)")
    p.add_argument("--seq-len", type=int, default=None, help="longest sample in tokens (default: the base's context)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous kit run in --out")
    p.set_defaults(func=run_sft)


def run_sft(args) -> int:
    from ..sft import sft_config, train_sft

    overrides = {"overwrite": args.overwrite}
    for name, field in (("long_fraction", "long_fraction"), ("steps", "max_steps"), ("seq_len", "seq_len")):
        if getattr(args, name) is not None:
            overrides[field] = getattr(args, name)
    result, report = train_sft(sft_config(args.base, args.out, args.instructions, args.profile, **overrides))
    print(f"examples: {report['examples']} ({report['long']} long, {report['short']} short); skipped: "
          f"{report['skipped'] or 'none'}; S2 group size: {report['group_size']}")
    print(f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {result.steps} steps; saved to {result.out_dir}/model")
    return 0
