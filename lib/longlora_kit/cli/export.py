"""``longlora-kit export``: a merged model as one GGUF file (llama.cpp) that keeps its extended RoPE."""

from __future__ import annotations

import sys


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a merged Llama model as a GGUF file (llama.cpp) with its extended RoPE",
        description="Reads a merged model folder (lora.merge + save_pretrained) and writes one GGUF file: "
        "weights, hyper-parameters, tokenizer, chat template and the RoPE scaling (type, factor, "
        "original context), so llama.cpp runtimes use the extended context.",
    )
    p.add_argument("--model", required=True, help="merged model folder (config.json, safetensors, tokenizer)")
    p.add_argument("--gguf", required=True, help="output file, e.g. model-8k.gguf")
    # export.DTYPES, spelled out so that --help loads no torch (tests/test_export.py checks they agree)
    p.add_argument("--dtype", choices=("f32", "f16"), default="f32", help="f32 (exact) or f16 (half the size)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from ..export import export_folder

    path = export_folder(args.model, args.gguf, args.dtype, args.overwrite, args.tokenizer)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    print(path)
    return 0
