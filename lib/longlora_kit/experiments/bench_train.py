"""``longlora-kit bench train``: LoRA+ with S2-Attn vs full attention, trained side by side at 7B shape.

It trains a model of a preset's *shape* with random weights built directly on the device
(no download): LoRA+ with S2-Attn next to LoRA+ with full attention, at each context length, and
reports tokens/s, peak memory (the allocator's), the estimator's prediction, and MFU::

    MFU = tokens/s x model FLOPs per token / peak FLOP/s,    model FLOPs = 3 x forward (Table 11)

On a GPU it uses bf16, gradient checkpointing, the chunked cross-entropy, fused AdamW and the best
attention kernel available (flash-attn, else SDPA). On a CPU the same code runs a narrow shape in fp32.
"""

from __future__ import annotations

import contextlib
import time

import torch

from ..config import attn_implementation, is_s2
from ..utils import cpu_name

#: Dense bf16 peak FLOP/s by GPU name fragment (vendor datasheets), for MFU.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A10G": 125e12, "L4": 121e12,
                   "4090": 165e12, "3090": 71e12}

DEFAULT_CONTEXTS = (8192, 16384, 32768, 65536, 100_000)
SETUPS = (("lora+", "s2"), ("lora+", "full"))


def bench_config(preset: str = "llama2-7b", num_layers: int | None = None, hidden_size: int | None = None,
                 vocab_size: int | None = None):
    """The preset's ``LlamaConfig``, optionally narrowed (fewer layers / smaller width, same head_dim).

    >>> c = bench_config("llama2-7b", num_layers=2, hidden_size=512)  # 7B's head_dim 128: 4 heads
    >>> c.num_hidden_layers, c.num_attention_heads, c.head_dim, c.intermediate_size
    (2, 4, 128, 1376)
    """
    from ..presets import get_preset

    config = get_preset(preset).llama_config()
    if num_layers is not None:
        config.num_hidden_layers = num_layers
    if hidden_size is not None:
        head_dim = config.hidden_size // config.num_attention_heads
        if hidden_size % head_dim:
            raise ValueError(f"hidden_size={hidden_size} must be a multiple of head_dim={head_dim}")
        ratio = config.num_attention_heads // config.num_key_value_heads
        config.num_attention_heads = hidden_size // head_dim
        config.num_key_value_heads = max(1, config.num_attention_heads // ratio)
        config.intermediate_size = int(config.intermediate_size * hidden_size / config.hidden_size)
        config.hidden_size = hidden_size
        config.head_dim = head_dim
    if vocab_size is not None:
        config.vocab_size = vocab_size
    return config


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _attention_impl(attention: str, device: torch.device) -> str:
    if is_s2(attention):
        from ..s2attn import register

        register()  # the kit's S2 names for transformers (idempotent)
        return attn_implementation(attention)
    from ..utils import flash_attn_available

    return "flash_attention_2" if device.type == "cuda" and flash_attn_available() else "sdpa"


def peak_flops_of(device: torch.device) -> float | None:
    """The device's dense bf16 peak FLOP/s when known (GPU), else None (no MFU on CPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def train_step_benchmark(config, context: int, method: str = "lora+", attention: str = "s2", steps: int = 3,
                         warmup: int = 1, batch: int = 1, loss_chunk: int = 2048, device=None,
                         seed: int = 0) -> dict:
    """Time ``steps`` optimizer steps of one setting; return tokens/s, peak memory and MFU."""
    from transformers import LlamaForCausalLM

    from .. import lora
    from ..memory import estimate_memory, mfu
    from ..train import model_loss
    from ..utils import measure_peak_cpu

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    config = config.__class__(**{**config.to_dict(), "use_cache": False})
    config._attn_implementation = _attention_impl(attention, device)
    config.group_size_ratio = 0.25
    torch.manual_seed(seed)
    row = dict(context=context, method=method, attention=attention, kernel=config._attn_implementation)
    try:
        with _default_dtype(dtype), torch.device(device):  # random weights straight on the device
            model = LlamaForCausalLM(config)
        model = lora.apply(model, method)
        model.train()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        params = [p for p in model.parameters() if p.requires_grad]
        opt_kwargs = {"fused": True} if cuda else {"foreach": False}
        optimizer = torch.optim.AdamW(params, lr=2e-5, betas=(0.9, 0.95), weight_decay=0.0, **opt_kwargs)
        ids = torch.randint(0, config.vocab_size, (batch, context), device=device)

        def step():
            model_loss(model, ids, loss_chunk).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / steps
        if cuda:
            peak = torch.cuda.max_memory_allocated(device)
        else:  # the CPU allocator's peak of one more step, weights and optimizer states included
            static = [*model.parameters(), *model.buffers()]
            static += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
            peak = measure_peak_cpu(step, static)
    except torch.OutOfMemoryError:
        row.update(tokens_per_s=None, peak_gb=None, predicted_gb=float("nan"), mfu=None, step_s=None, oom=True)
        return row
    finally:
        if cuda:
            torch.cuda.empty_cache()
    tokens_per_s = batch * context / seconds
    flops = peak_flops_of(device)
    predicted = estimate_memory(config, context, batch, method, attention, True,
                                "bf16" if cuda else "fp32", "flash" if cuda else "sdpa",
                                loss_chunk=loss_chunk, device=device.type if cuda else "cpu")
    # raw numbers here; rounding is the table's job (markdown_table)
    row.update(step_s=seconds, tokens_per_s=tokens_per_s, peak_gb=peak / 1e9, predicted_gb=predicted.total / 1e9,
               mfu=mfu(tokens_per_s, config, context, attention, flops) if flops else None, oom=False)
    return row


def train_benchmark(config, contexts=DEFAULT_CONTEXTS, setups=SETUPS, **kwargs) -> list[dict]:
    """Every (context, setup) in one run; adds ``speedup`` (S2 over full attention) to the S2 rows."""
    rows = []
    for context in contexts:
        if context % 4:
            raise ValueError(f"context {context} is not a multiple of 4 (S2 groups are a quarter); "
                             f"use {context - context % 4}")
        by_setup = {}
        for method, attention in setups:
            row = train_step_benchmark(config, context, method, attention, **kwargs)
            by_setup[attention] = row
            rows.append(row)
        s2, full = by_setup.get("s2"), by_setup.get("full")
        if s2 and full and s2.get("tokens_per_s") and full.get("tokens_per_s"):
            s2["speedup_vs_full"] = s2["tokens_per_s"] / full["tokens_per_s"]
    return rows


def machine_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU ({cpu_name()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def markdown_table(rows: list[dict], shape: str, machine: str | None = None) -> str:
    """The results next to the paper's Table 12 (LongLoRA = LoRA+ S2 row; full attention = LoRA row)."""
    from ..memory import PAPER_TABLE12_GB, PAPER_TABLE12_HOURS

    lines = [f"### bench train: {shape}", "", f"Machine: {machine or machine_description()}. "
             "Paper columns: Table 12 per GPU (8xA100, ZeRO-2), 1000 steps of 64 sequences.", "",
             "| context | attention | kernel | tokens/s | S2 speed-up | peak GB | predicted GB | MFU "
             "| paper GB | paper h/1000 steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper_row = "lora+ s2" if r["attention"] == "s2" else "lora"
        paper_gb = PAPER_TABLE12_GB[paper_row].get(r["context"], "–")  # None in the table = OOM
        paper_h = PAPER_TABLE12_HOURS[paper_row].get(r["context"], "–")
        mfu_cell = "–" if r.get("mfu") is None else f"{r['mfu']:.1%}"
        speedup = r.get("speedup_vs_full")
        cells = [r["context"], r["attention"], r["kernel"], "OOM" if r.get("oom") else f"{r['tokens_per_s']:.1f}",
                 "–" if speedup is None else f"{speedup:.2f}x", "OOM" if r.get("oom") else f"{r['peak_gb']:.3g}", f"{r['predicted_gb']:.3g}",
                 mfu_cell, "OOM" if paper_gb is None else paper_gb, "–" if paper_h is None else paper_h]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


