"""``longlora-kit pretrain`` and ``longlora-kit extend``: every ``TrainConfig`` field is an option.

The options are generated from the dataclass (:func:`add_config_options`): ``--field-name`` for each
field, typed from its annotation; bools as ``--flag`` / ``--no-flag``, dicts as JSON, ``none`` for an
optional field's None, two numbers for ``--betas``. The preset and profile choose every field first
(``recipes``); an option given on the command line replaces that one field:

>>> parser = argparse.ArgumentParser()
>>> add_config_options(parser, {})
>>> config_overrides(parser.parse_args(["--steps", "5", "--no-progress", "--betas", "0.9", "0.99",
...                                     "--model-overrides", '{"num_hidden_layers": 1}']))
{'model_overrides': {'num_hidden_layers': 1}, 'max_steps': 5, 'betas': (0.9, 0.99), 'progress': False}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..config import ATTENTIONS, METHODS, MIXED_PRECISIONS, SCHEDULES, TrainConfig

#: the short spellings the CLI had before every field became an option (kept as aliases)
ALIASES = {"out_dir": ("--out",), "base_model": ("--base",), "max_steps": ("--steps",)}
HELP = {
    "out_dir": "run directory; re-running the same settings resumes or reuses it; other settings, and a second "
               "run while one is writing there, are refused",
    "base_model": "the model to extend (a save_pretrained folder)",
    "max_steps": "optimiser steps", "lr": "peak learning rate",
    "save_every": "checkpoint every N steps (0: only at the end)",
    "engine_checkpoint": "checkpoint with accelerator.save_state, as DeepSpeed / FSDP runs always do",
    "overwrite": "replace a previous kit run in --out (only a folder the kit made, never one holding --base)",
    "method": " / ".join(METHODS), "attention": " / ".join(ATTENTIONS), "lr_schedule": " / ".join(SCHEDULES),
    "mixed_precision": " / ".join(MIXED_PRECISIONS), "target_length": "extended context (default: 4x the base's)",
    "model_overrides": "tiny_config fields for a fresh model, as JSON",
}


def _optional(kind):
    """An argparse type for an ``X | None`` field: ``none`` (any case) gives None."""
    def convert(text: str):
        return None if text.strip().lower() == "none" else kind(text)
    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object (write it as '{{\"name\": value}}')")
    return value


def _argument(field: dataclasses.Field) -> dict:
    """``add_argument`` keywords for one field, from its annotation (a string: annotations are postponed)."""
    kind = field.type.replace(" | None", "")
    if kind == "bool":
        return dict(action=argparse.BooleanOptionalAction)
    if kind == "dict":
        return dict(type=_json_dict, metavar="JSON")
    if kind.startswith("tuple["):
        return dict(type=float, nargs=2, metavar=("B1", "B2"))
    convert = {"int": int, "float": float, "str": str}[kind]
    return dict(type=_optional(convert) if field.type.endswith("| None") else convert)


def add_config_options(parser, defaults: dict[str, object]) -> None:
    """One option per ``TrainConfig`` field; ``defaults`` gives a field a shown default (others: the recipe's)."""
    group = parser.add_argument_group("training settings (TrainConfig fields; default: from the preset and profile)")
    for field in dataclasses.fields(TrainConfig):
        flags = (f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, ()))
        default = defaults.get(field.name, argparse.SUPPRESS)  # SUPPRESS: absent unless given
        note = "" if default is argparse.SUPPRESS else " (default: %(default)s)"
        group.add_argument(*flags, dest=field.name, default=default, help=HELP.get(field.name, "") + note,
                           **_argument(field))


def config_overrides(args) -> dict:
    """The ``TrainConfig`` fields given on the command line (tuples for tuple fields)."""
    out = {}
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            out[field.name] = tuple(value) if isinstance(value, list) else value
    return out


def _common(p, **defaults) -> None:
    p.add_argument("--preset", default="tiny", help="model/recipe preset (default: %(default)s)")
    p.add_argument("--profile", default=None, help="run budget: smoke / workshop / full (default: $LONGLORA_KIT_PROFILE or workshop)")
    add_config_options(p, {"save_every": 0, "progress": True, "overwrite": False, **defaults})


def add_commands(subparsers) -> None:
    pre = subparsers.add_parser(
        "pretrain", help="pre-train a tiny Llama at a short context on the kit's long-range corpus",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stage 1 of LongLoRA on a laptop: train a fresh tiny Llama (full fine-tuning, full attention)\n"
        "at a short context (128 tokens in the workshop profile) on the kit's synthetic long-range corpus.\n"
        "Writes metrics.jsonl, a checkpoint/ (resumable), model/ (weights + tokenizer) and result.json.\n\n"
        "example:\n  longlora-kit pretrain --profile smoke --out runs/pretrain-smoke",
    )
    _common(pre, out_dir="runs/pretrain")
    pre.set_defaults(func=run_pretrain)

    ext = subparsers.add_parser(
        "extend", help="extend a model's context 4x with PI + S2-Attn + LoRA+ (LongLoRA)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stage 2: take the pre-trained model, interpolate its RoPE positions to 4x the context\n"
        "(linear PI as in the paper for the hub presets; YaRN for the tiny preset, whose 32-dim heads lose their\n"
        "copy under linear PI), and fine-tune at that length with S2-Attn (shifted group attention, training\n"
        "only) and LoRA+ (LoRA on q/k/v/o + trainable embeddings and norms), as in LongLoRA.\n"
        "--method full --attention full gives the expensive baseline the paper compares against.\n\n"
        "example:\n  longlora-kit extend --method full --attention full --out runs/extend-full",
    )
    _common(ext, out_dir="runs/extend", base_model="runs/pretrain/model")
    ext.set_defaults(func=run_extend)


def _print_summary(result, title: str) -> None:
    from ..runs.layout import MODEL_DIR
    from ..utils import format_table

    s = result.summary()
    row = {"run": title, "steps": s["steps"], "first loss": f"{s['first_loss']:.3f}", "final loss": f"{s['final_loss']:.3f}",
           "tokens": s["tokens"], "time (s)": f"{s['seconds']:.1f}", "tokens/s": f"{s['tokens_per_second']:.0f}",
           "trainable": f"{s['trainable_parameters']:,}",
           "peak MB": "n/a" if s["peak_memory_mb"] is None else f"{s['peak_memory_mb']:.0f}"}
    print(format_table([row]))
    print(f"saved to {s['out_dir']}/{MODEL_DIR}")


def _train_and_print(config, title: str) -> int:
    from ..train import train

    try:
        result = train(config)
    except OSError as err:  # a full disk or a vanished folder: one line naming the path, no traceback
        print(f"longlora-kit: error: {err}", file=sys.stderr)
        return 1
    _print_summary(result, title)
    return 0


def run_pretrain(args) -> int:
    from ..recipes import pretrain_config

    overrides = config_overrides(args)
    config = pretrain_config(overrides.pop("out_dir"), args.preset, args.profile, **overrides)
    return _train_and_print(config, "pretrain")


def run_extend(args) -> int:
    from ..recipes import extension_config

    overrides = config_overrides(args)
    if overrides.get("target_length") is not None:
        overrides.setdefault("seq_len", overrides["target_length"])  # train at the length it extends to
    config = extension_config(overrides.pop("base_model"), overrides.pop("out_dir"), args.preset, args.profile,
                              **overrides)
    return _train_and_print(config, f"extend ({config.method}, {config.attention})")
