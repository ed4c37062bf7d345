"""The ``longlora-kit`` command line: every sub-command's argparse lives in this package.

One file per command group, each with an ``add_commands(subparsers)`` that adds its sub-commands and
sets ``func`` (called with the parsed args; returns an exit code or None). A handler imports the
library it drives *inside* the function, so ``longlora-kit --help`` never loads torch.

    longlora-kit env          # versions, device, flash-attn, profile
    longlora-kit --help       # every sub-command, with what it teaches

>>> sorted(build_parser()._subparsers._group_actions[0].choices)  # doctest: +NORMALIZE_WHITESPACE
['bench', 'chat', 'env', 'eval', 'export', 'extend', 'fetch', 'memory', 'pretrain', 'real-eval',
 'reproduce', 'sft', 'sft-eval', 'tokenizer']
"""

from __future__ import annotations

import argparse
import sys

from . import data, evaluate, experiments, export, memory, real_model, sft, train

#: the command groups, in the order ``--help`` lists them
GROUPS = (data, train, sft, evaluate, memory, experiments, real_model, export)


def _add_env(subparsers) -> None:
    p = subparsers.add_parser("env", help="print versions, device, flash-attn availability and the profile")
    p.set_defaults(func=_run_env)


def _run_env(args) -> int:
    from ..utils import format_report

    print(format_report())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longlora-kit",
        description="LongLoRA on a laptop: pretrain a tiny Llama, extend its context with "
        "position interpolation + S2-Attn + LoRA+, and evaluate it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_env(subparsers)
    for group in GROUPS:
        group.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a recorded result says reproduces it
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # the kit's bad-input errors: one clear line, no traceback
        print(f"longlora-kit {args.command}: error: {err}", file=sys.stderr)
        return 2


__all__ = ["GROUPS", "build_parser", "main"]
