"""The ``longlora-kit`` command line.

Each stage module contributes its sub-commands through a ``register_cli(subparsers)`` function
listed in ``REGISTRARS``; a sub-command sets ``func`` (called with the parsed args, returning an
exit code or None).

    longlora-kit env          # versions, device, flash-attn, profile
    longlora-kit --help       # every sub-command, with what it teaches
"""

from __future__ import annotations

import argparse
import importlib
import sys

# "module:function" pairs; each function adds its sub-commands to the subparsers it is given.
REGISTRARS = [
    "longlora_kit.cli:register_env",
    "longlora_kit.data:register_cli",
    "longlora_kit.train:register_cli",
    "longlora_kit.evaluate:register_cli",
    "longlora_kit.memory:register_cli",
    "longlora_kit.experiments.cli:register_bench",
    "longlora_kit.experiments.cli:register_reproduce",
    "longlora_kit.real_model:register_cli",
    "longlora_kit.chat:register_cli",
    "longlora_kit.real_report:register_cli",
]


def register_env(subparsers) -> None:
    p = subparsers.add_parser("env", help="print versions, device, flash-attn availability and the profile")
    p.set_defaults(func=_run_env)


def _run_env(args) -> int:
    from .utils import format_report

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
    for target in REGISTRARS:
        module, func = target.split(":")
        getattr(importlib.import_module(module), func)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # the kit's bad-input errors: one clear line, no traceback
        print(f"longlora-kit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
