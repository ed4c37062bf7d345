"""``longlora-kit eval``: perplexity and passkey accuracy of the base, PI / YaRN zero-shot and LongLoRA."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_EXTENDED = "runs/extend/model"


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="perplexity at 1x/2x/4x the trained length and passkey accuracy: base, PI and YaRN zero-shot, LongLoRA",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate with full attention (eval mode), as the paper does:\n"
        "  base            the pre-trained model as it is (RoPE extrapolates beyond its trained length)\n"
        "  PI zero-shot    the same weights with positions linearly interpolated to the extended length, no training\n"
        "  YaRN zero-shot  the same, interpolating only the low RoPE frequencies (what the tiny recipe extends with)\n"
        "  LongLoRA        the model `longlora-kit extend` trained (interpolation + S2-Attn + LoRA+)\n"
        "Perplexity uses a sliding window (stride = length/4) that scores every token once; passkey accuracy\n"
        "is the exact match of the greedy answer, over a depth x length grid.\n\n"
        "example:\n  longlora-kit eval --model full-FT=runs/extend-full/model",
    )
    p.add_argument("--preset", default="tiny", help="evaluation preset (default: %(default)s)")
    p.add_argument("--profile", default=None, help="run budget: smoke / workshop / full (default: $LONGLORA_KIT_PROFILE or workshop)")
    p.add_argument("--out", default="runs/eval", help="where eval.json goes (default: %(default)s)")
    p.add_argument("--base", default="runs/pretrain/model", help="the pre-trained model (default: %(default)s)")
    p.add_argument("--extended", default=None,
                   help=f"the extended model (default: {DEFAULT_EXTENDED} when it exists, else no LongLoRA row)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="another model to evaluate (repeatable)")
    p.set_defaults(func=run_eval)


def _max_positions(model_folder: Path) -> int:
    return json.loads((model_folder / "config.json").read_text())["max_position_embeddings"]


def models_to_evaluate(args) -> tuple[dict[str, tuple[str, int | None, str]], int, int]:
    """(name -> (path, target length or None, RoPE method), trained length, extended length), with every
    path checked before anything runs."""
    from ..evaluate import check_model_folder

    base = check_model_folder(args.base, "--base")
    extended = args.extended
    if extended is None and (Path(DEFAULT_EXTENDED) / "config.json").is_file():
        extended = DEFAULT_EXTENDED
    trained = _max_positions(base)
    target = _max_positions(check_model_folder(extended, "--extended")) if extended is not None else 4 * trained
    if extended is None:
        print(f"no extended model at {DEFAULT_EXTENDED} (`longlora-kit extend` makes one): no LongLoRA row")
    models = {"base": (str(base), None, "linear"), "PI zero-shot": (str(base), target, "linear"),
              "YaRN zero-shot": (str(base), target, "yarn")}
    if extended is not None:
        models["LongLoRA"] = (str(extended), None, "linear")
    for item in args.model:
        name, _, path = item.partition("=")
        if not name or not path:
            raise ValueError(f"--model {item!r}: write NAME=PATH")
        if name in models:
            raise ValueError(f"--model {item!r}: the name {name!r} is taken; choose another NAME")
        models[name] = (str(check_model_folder(path, f"--model {name}")), None, "linear")
    return models, trained, target


def run_eval(args) -> int:
    from ..data import load_tokenizer
    from ..evaluate import eval_settings, evaluate_model, evaluation_data, load_for_eval, save_evals
    from ..profile import current_profile
    from ..utils import format_table

    # Every argument is checked before the first (slow) evaluation.
    if args.preset != "tiny":
        raise ValueError(f"preset={args.preset!r} has no evaluation settings yet; use 'tiny'")
    profile = current_profile(args.profile)
    out = Path(args.out) / "eval.json"
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file; pass a folder for eval.json")
    models, trained, target = models_to_evaluate(args)
    tokenizer = load_tokenizer(args.base)
    settings = eval_settings(trained, factor=max(1, target // trained), profile=profile)
    evals, data = [], evaluation_data(settings, tokenizer)
    for name, (path, length, method) in models.items():
        model = load_for_eval(path, target_length=length, rope_method=method)
        evals.append(evaluate_model(name, model, tokenizer, settings, data))
        save_evals(evals, out)  # after every model: a later failure keeps what was computed
        print(f"evaluated {name}", flush=True)
    print(format_table([e.row() for e in evals]))
    print(f"saved to {out}")
    return 0
