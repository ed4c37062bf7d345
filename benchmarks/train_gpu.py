"""GPU training benchmark: LoRA+ with S2-Attn vs full attention on a Llama-2-7B-shaped model.

Random weights are built directly on the GPU (no download). For each context (8k, 16k, 32k, 64k, 100k)
both settings train a few steps in one run; tokens/s, the allocator's peak memory, the estimator's
prediction and MFU are printed side by side and appended to docs/benchmarks.md next to the paper's
Table 12 (per GPU).

    python benchmarks/train_gpu.py                        # the real thing (needs an 80 GB GPU)
    python benchmarks/train_gpu.py --preset tiny --contexts 256,512 --no-append   # CPU smoke run

Targets from the issue: 100k fits one 80 GB GPU; S2 >= 1.6x full attention at 32k; >= 40% MFU at 32k.
"""

import argparse
import sys

import torch

from longlora_kit.bench import DEFAULT_CONTEXTS, bench_config, markdown_table, train_benchmark


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="llama2-7b")
    p.add_argument("--contexts", default=",".join(map(str, DEFAULT_CONTEXTS)))
    p.add_argument("--num-layers", type=int, default=None)
    p.add_argument("--hidden-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    config = bench_config(args.preset, args.num_layers, args.hidden_size)
    contexts = tuple(int(c) for c in args.contexts.split(","))
    rows = train_benchmark(config, contexts, steps=args.steps, warmup=args.warmup)
    table = markdown_table(rows, f"{args.preset} shape ({config.num_hidden_layers} layers, width "
                                 f"{config.hidden_size}), LoRA+, random weights, "
                                 + ("bf16" if torch.cuda.is_available() else "fp32 on CPU"))
    print(table)
    if not args.no_append:
        with open(args.out, "a") as f:
            f.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
