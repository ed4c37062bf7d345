"""``longlora-kit bench real``: one LoRA+ training step of the real SmolLM2-135M, S2-Attn vs full attention.

The fetched model (real weights, fp32, CPU) with LoRA+, gradient checkpointing and the chunked loss
takes one forward + backward + AdamW step on ``L`` tokens, once with full attention (SDPA) and once
with S2-Attn, side by side in one run. Each speed-up is printed beside the limit the kit's FLOP model
(:mod:`longlora_kit.memory`) gives: only attention gets cheaper, so

    limit = FLOPs(step, full attention) / FLOPs(step, S2)

Here attention is counted *causally* (a causal kernel skips the masked half: ``attention_cost(...,
causal=True)``), because that is what SDPA's causal kernel and S2's causal groups compute; the
paper's Table 11 counts whole blocks. Two limits: ``3 x forward`` (the usual model FLOPs) and this
step's hardware FLOPs (LoRA skips weight gradients of frozen layers and checkpointing recomputes the
forward, so attention's share, and the limit, are larger).

>>> from longlora_kit.real_eval import _smollm2_like
>>> c = _smollm2_like(); c.num_hidden_layers, c.intermediate_size, c.vocab_size = 30, 1536, 49152
>>> round(speedup_limits(c, 8192)["model"], 2)  # attention is ~half the forward at 8k
1.62
"""

from __future__ import annotations

import time

import torch

DEFAULT_CONTEXTS = (2048, 4096, 8192)


def causal_flops(config, context: int, attention: str) -> dict[str, float]:
    """``memory.step_flops`` (LoRA+, checkpointing) with attention counted causally: model and hardware."""
    from ..memory import attention_cost, forward_flops, step_flops

    whole = forward_flops(config, context, attention)["attention"]
    group = context // 4 if attention == "s2" else None
    causal = attention_cost(context, group, config.num_attention_heads, config.head_dim,
                            config.num_hidden_layers, causal=True)["flops"]
    step = step_flops(config, context, attention, method="lora+", checkpointing=True)
    # attention is in the forward 3x (model) and 4x (hardware: + the checkpointed recompute)
    return {"model": step["model"] - 3 * (whole - causal), "hardware": step["hardware"] - 4 * (whole - causal)}


def speedup_limits(config, context: int) -> dict[str, float]:
    """The most S2 can gain over full attention in one step, by the FLOP model: {"model", "hardware"}."""
    full, s2 = causal_flops(config, context, "full"), causal_flops(config, context, "s2")
    return {k: full[k] / s2[k] for k in full}


def step_seconds(folder, context: int, attention: str, steps: int = 1, warmup: int = 1, memory: bool = False,
                 seed: int = 0) -> dict:
    """Seconds per LoRA+ step (mean of ``steps`` after ``warmup``) and, with ``memory``, the allocator's peak."""
    from .. import lora
    from ..real_eval import load_model, load_s2_model, text_tokens
    from ..train import model_loss
    from ..utils import measure_peak_cpu

    model = load_s2_model(folder) if attention == "s2" else load_model(folder, attn_implementation="sdpa")
    model.config.use_cache = False
    model = lora.apply(model, "lora+")
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=False)
    from transformers import AutoTokenizer

    ids = text_tokens("python", AutoTokenizer.from_pretrained(folder), context)[None]  # (1, L) real text

    def step():
        model_loss(model, ids).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.manual_seed(seed)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    row = {"context": context, "attention": attention, "step_s": (time.perf_counter() - start) / steps}
    if memory:
        static = [*model.parameters(), *model.buffers()]
        static += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        row["peak_gb"] = measure_peak_cpu(step, static) / 1e9
    return row


def real_benchmark(folder, contexts=DEFAULT_CONTEXTS, log=print, **kwargs) -> list[dict]:
    """Full attention then S2 at each context; the S2 row gets ``speedup`` and the two ``limit`` values.

    Every row also gets ``gflops``, this step's hardware FLOPs by the FLOP model divided by its seconds:
    when full and S2 run at the same rate, the speed-up is the FLOP model's limit.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    rows = []
    for context in contexts:
        full = step_seconds(folder, context, "full", **kwargs)
        s2 = step_seconds(folder, context, "s2", **kwargs)
        for row in (full, s2):
            row["gflops"] = causal_flops(config, context, row["attention"])["hardware"] / row["step_s"] / 1e9
        limits = speedup_limits(config, context)
        s2.update(speedup=full["step_s"] / s2["step_s"], limit_model=limits["model"], limit_hardware=limits["hardware"])
        rows += [full, s2]
        log(f"{context}: full {full['step_s']:.1f} s, S2 {s2['step_s']:.1f} s, speed-up {s2['speedup']:.2f}x "
            f"(FLOP-model limit {limits['model']:.2f}x model, {limits['hardware']:.2f}x this step)")
    return rows


def markdown_table(rows: list[dict], machine: str) -> str:
    """The rows as the docs/benchmarks.md section."""
    lines = ["### bench real: SmolLM2-135M-Instruct, one LoRA+ step (CPU, fp32, checkpointing, chunked loss)", "",
             f"Machine: {machine}. Limit = FLOPs of the full-attention step / FLOPs of the S2 step, attention "
             "counted causally (`experiments/bench_real.py`).", "",
             "| context | attention | s/step | GFLOP/s | peak GB | S2 speed-up | limit (3x fwd) | limit (this step) | of limit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = f"{r['peak_gb']:.2f}" if "peak_gb" in r else "–"
        extra = ["–"] * 4
        if "speedup" in r:
            extra = [f"{r['speedup']:.2f}x", f"{r['limit_model']:.2f}x", f"{r['limit_hardware']:.2f}x",
                     f"{(r['speedup'] - 1) / (r['limit_hardware'] - 1):.0%}"]
        rate = f"{r['gflops']:.0f}" if "gflops" in r else "–"
        lines.append(f"| {r['context']} | {r['attention']} | {r['step_s']:.1f} | {rate} | {peak} | " + " | ".join(extra) + " |")
    return "\n".join(lines) + "\n"
