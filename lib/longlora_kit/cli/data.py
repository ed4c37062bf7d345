"""``longlora-kit tokenizer``: train the kit's byte-level BPE (``data.build_tokenizer``)."""

from __future__ import annotations

from ..tokenizer import DEFAULT_TOKENIZER_DIR, TOKENIZER_VOCAB_SIZE


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenizer", help="train the kit's byte-level BPE tokenizer and save it (default: into the package)",
        description="Train the kit's byte-level BPE (Hugging Face tokenizers, 4096 tokens, single digits) "
        "on the synthetic long-range corpus plus local standard-library source, and save it. Deterministic: "
        "the same Python installation always gives the same tokenizer.json.",
    )
    p.add_argument("--out", default=str(DEFAULT_TOKENIZER_DIR), help="directory to save it in (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=TOKENIZER_VOCAB_SIZE, help="BPE vocabulary size (default: %(default)s)")
    p.set_defaults(func=run_tokenizer)


def run_tokenizer(args) -> int:
    from ..data import build_tokenizer

    tokenizer = build_tokenizer(args.out, vocab_size=args.vocab_size)
    print(f"saved a {len(tokenizer)}-token byte-level BPE to {args.out}")
    return 0
