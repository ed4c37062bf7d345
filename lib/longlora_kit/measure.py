"""Measure what ``memory.estimate_memory`` predicts: the peak bytes of a real training micro-step.

The estimator counts tensors on paper; this module builds the model, runs the step on the CPU and
asks the allocator (``utils.measure_peak_cpu``). ``tests/test_memory.py`` holds the two within 15%
of each other on a tiny Llama, and notebook 06 shows the comparison. It lives apart from ``memory``
because it builds models (transformers, peft); the estimator itself needs neither.
"""

from __future__ import annotations

import torch

from . import lora
from .config import attn_implementation, check_attention, is_s2
from .models import build_model
from .utils import measure_peak_cpu


def measured_training_peak(config, context: int, batch: int = 1, method: str = "lora+",
                           checkpointing: bool = False, kernel: str = "sdpa", precision: str = "fp32",
                           attention: str = "full", seed: int = 0) -> int:
    """Build ``config`` on the CPU, and measure the peak of a second accumulation micro-step.

    The first micro-step and an optimizer step run unmeasured so that gradients and AdamW states exist,
    as in the middle of a run with gradient accumulation; the measured step is forward + backward.
    ``attention`` is one of ``config.ATTENTIONS`` (``"full"``, ``"s2"``, ``"s2_paper"``), as in ``memory``.
    """
    check_attention(attention)
    for name, value, choices in (("precision", precision, ("fp32", "bf16")), ("kernel", kernel, ("eager", "sdpa"))):
        if value not in choices:
            raise ValueError(f"{name}={value!r} cannot be measured on the CPU; choose one of {', '.join(choices)}")
    config = config.__class__(**{**config.to_dict(), "use_cache": False})
    config._attn_implementation = kernel
    if is_s2(attention):
        from .s2attn import register

        register()  # the kit's S2 names for transformers (idempotent)
        config._attn_implementation = attn_implementation(attention)
        config.group_size_ratio = 0.25
    model = build_model(config, seed=seed)
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    model = lora.apply(model, method)
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method != "full":
            model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), foreach=False)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch, context), generator=gen)  # (B, L)

    def micro_step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()

    micro_step()
    optimizer.step()
    micro_step()  # gradients now live, as in accumulation
    static = [*model.parameters(), *model.buffers(), *(p.grad for p in params if p.grad is not None)]
    static += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return measure_peak_cpu(micro_step, static)
