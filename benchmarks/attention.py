"""S2-Attn vs full causal attention, forward + backward, measured side by side (see docs/benchmarks.md).

    python benchmarks/attention.py --lengths 2048,4096,8192,16384 --repeats 5

Same as ``longlora-kit bench attention``; the code lives in ``longlora_kit.bench_attention``.
"""

import argparse
import sys

from longlora_kit.bench_attention import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
