"""``longlora-kit memory``: predicted peak training memory, the longest context that fits, step FLOPs."""

from __future__ import annotations

from ..config import ATTENTIONS, METHODS
from ..memory import KERNELS, PRECISIONS  # memory imports only the stdlib and config: cheap at --help time


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("memory", help="predict peak training memory by component, the longest context "
                              "that fits a GPU, and the step FLOPs")
    p.add_argument("--preset", default="llama2-7b", help="preset name or local model folder (default llama2-7b)")
    p.add_argument("--context", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--method", choices=METHODS, default="lora+")
    p.add_argument("--attention", default="s2", help=f"{' / '.join(ATTENTIONS)} (default: %(default)s)")
    p.add_argument("--no-checkpointing", dest="checkpointing", action="store_false")
    p.add_argument("--precision", choices=PRECISIONS, default="mixed")
    p.add_argument("--kernel", choices=KERNELS, default="flash")
    p.add_argument("--loss-chunk", type=int, default=None, help="tokens per cross-entropy chunk (default: none)")
    p.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), default=0)
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument("--gpu-gib", type=float, default=80.0, help="GPU memory to fit in (GiB)")
    p.set_defaults(func=run_memory)


def run_memory(args) -> int:
    from ..config import check_attention
    from ..memory import check_gpu_gib, estimate_memory, forward_flops, max_context, step_flops
    from ..presets import get_preset

    check_gpu_gib(args.gpu_gib)  # bad input fails before anything is printed
    check_attention(args.attention)
    config = get_preset(args.preset).llama_config()
    settings = dict(batch=args.batch, method=args.method, attention=args.attention,
                    checkpointing=args.checkpointing, precision=args.precision, kernel=args.kernel,
                    loss_chunk=args.loss_chunk, zero_stage=args.zero_stage, world_size=args.world_size)
    est = estimate_memory(config, args.context, **settings)
    longest = max_context(config, args.gpu_gib, **settings)
    print(f"{args.preset} at {args.context} tokens, {args.method}, {args.attention} attention, "
          f"{args.precision}, kernel {args.kernel}, checkpointing {'on' if args.checkpointing else 'off'}")
    print(est)
    verdict = "fits" if est.fits(args.gpu_gib) else "does NOT fit"
    print(f"-> {verdict} in {args.gpu_gib:g} GiB; longest context that fits: {longest} tokens")
    flops = step_flops(config, args.context, args.attention, args.batch, method=args.method,
                       checkpointing=args.checkpointing)
    fwd = forward_flops(config, args.context, args.attention, batch=args.batch)
    print("forward TFLOPs: " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in fwd.items()))
    print(f"step TFLOPs: model {flops['model'] / 1e12:.1f}, hardware {flops['hardware'] / 1e12:.1f}")
    return 0
