"""The training loop: pre-train a tiny Llama, or extend a model's context the LongLoRA way.

One explicit loop on 🤗 ``accelerate`` serves both jobs (``accelerate launch`` runs the same code on
several GPUs, or with DeepSpeed / FSDP). What LongLoRA adds to plain causal-LM training is set up
before the loop, from a :class:`~longlora_kit.config.TrainConfig`:

1. **Position interpolation** (``target_length``): ``rope.extend_config`` rescales RoPE positions by
   ``s = ceil(target / original)``, ``θ_i·m → θ_i·m/s``, so a 4× longer sequence reuses the angles
   the model saw in pre-training.
2. **S2-Attn** (``attention="s2"``): attention inside groups of ``G = L/4`` tokens, half of
   the heads shifted by ``G/2``; registered with transformers' ``AttentionInterface`` by
   ``s2attn.register()``, active in training mode only.
3. **LoRA+** (``method="lora+"``): LoRA on q/k/v/o plus trainable embeddings and norms (``lora.apply``).

The optimiser is the paper's: AdamW with ``β = (0.9, 0.95)``, weight decay 0, linear warm-up, then a
constant learning rate (or cosine decay, useful for pre-training), gradient clipping at 1.0.

**Chunked cross-entropy.** The loss is ``mean_t -log softmax(W h_t)[x_{t+1}]``. Materialising the
logits costs ``B·L·V`` floats: 100k tokens × 32k vocabulary in fp32 is 12.8 GB. :func:`chunked_causal_lm_loss`
computes it ``chunk`` positions at a time from the hidden states, recomputing each chunk's logits in
the backward pass (activation checkpointing), so only one chunk of logits ever exists.

**The run folder** (``out_dir``) is the ``runs`` package's job: checkpoints every ``save_every`` steps
(and at the end), written atomically; a re-run resumes from the checkpoint with exactly the batches,
weights and optimiser moments of an uninterrupted run (bit-identical losses on a CPU), or reloads a
finished run; a run with other settings or inputs is refused. See docs/reliability.md. Under DeepSpeed
or FSDP the optimiser state is sharded, so every process checkpoints through ``accelerator.save_state``
and resumes through ``accelerator.load_state`` (``runs.checkpoint``; ``engine_checkpoint`` forces it).

>>> config = TrainConfig(out_dir="runs/doc", max_steps=2, seq_len=32, batch_size=2,
...                      model_overrides=dict(hidden_size=32, num_hidden_layers=1), n_documents=20,
...                      progress=False, overwrite=True)
>>> result = train(config)  # doctest: +SKIP
>>> len(result.losses)      # doctest: +SKIP
2
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from . import runs
from .build import build_for_training, training_blocks
from .config import TrainConfig, TrainResult, check_group_size, validate
from .recipes import extension_config, pretrain_config, recipe
from .runs import load_checkpoint, read_metrics, save_checkpoint
from .runs.layout import ADAPTER_DIR, CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, MODEL_DIR, RESULT_FILE

# ----------------------------------------------------------------------------------------------- loss

def chunked_causal_lm_loss(hidden: torch.Tensor, lm_head: torch.nn.Module, input_ids: torch.Tensor,
                           chunk: int = 2048) -> torch.Tensor:
    """Mean next-token cross-entropy from the last hidden states, ``chunk`` positions at a time.

    Equals ``F.cross_entropy(lm_head(hidden)[:, :-1], input_ids[:, 1:])`` (and so does its gradient),
    but each chunk's logits are recomputed in backward instead of stored: peak logits memory is
    ``B·chunk·V`` floats instead of ``B·L·V``.

    >>> hidden, head = torch.randn(2, 9, 4), torch.nn.Linear(4, 5, bias=False)
    >>> ids = torch.randint(0, 5, (2, 9))
    >>> plain = F.cross_entropy(head(hidden)[:, :-1].reshape(-1, 5), ids[:, 1:].reshape(-1))
    >>> torch.allclose(chunked_causal_lm_loss(hidden, head, ids, chunk=3), plain)
    True
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 position, got {chunk}")
    hidden, targets = hidden[:, :-1], input_ids[:, 1:]  # (B, L-1, d), (B, L-1)

    def chunk_nll(h, t):  # summed NLL of one chunk; logits in fp32 for a stable log-softmax
        logits = lm_head(h).float()  # (B, c, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.shape[1], chunk):
        h, t = hidden[:, start : start + chunk], targets[:, start : start + chunk]
        if torch.is_grad_enabled():
            total = total + activation_checkpoint(chunk_nll, h, t, use_reentrant=False)
        else:
            total = total + chunk_nll(h, t)
    return total / targets.numel()


def causal_lm_of(model):
    """The ``LlamaForCausalLM`` inside ``model`` (itself, or the one a peft wrapper holds)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_loss(model, input_ids: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Causal-LM loss of ``model`` on ``input_ids`` (B, L) through the chunked cross-entropy."""
    causal = causal_lm_of(model)
    hidden = causal.model(input_ids=input_ids).last_hidden_state  # (B, L, d)
    return chunked_causal_lm_loss(hidden, causal.lm_head, input_ids, chunk)


class LossModule(torch.nn.Module):
    """``model_loss`` as a module. ``accelerator.prepare`` wraps *this* (DDP, FSDP, DeepSpeed), because
    a distributed wrapper only synchronises the gradients of work done through its own ``forward``."""

    def __init__(self, model, chunk: int = 2048):
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return model_loss(self.model, input_ids, self.chunk)


# -------------------------------------------------------------------------------- batches, schedule

def batch_indices(step: int, micro: int, config: TrainConfig, n_blocks: int, rank: int = 0,
                  world: int = 1) -> torch.Tensor:
    """Block indices of one micro-batch: a pure function of (seed, step, micro, rank), so resuming needs
    no data-loader state. Epochs are reshuffled with generator ``seed + epoch``.

    >>> batch_indices(0, 0, TrainConfig(batch_size=4, seed=0), n_blocks=4).sort().values.tolist()
    [0, 1, 2, 3]
    """
    first = ((step * config.grad_accum + micro) * world + rank) * config.batch_size
    wanted = torch.arange(first, first + config.batch_size)
    epochs = wanted // n_blocks
    out = torch.empty_like(wanted)
    for epoch in epochs.unique().tolist():
        order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(config.seed + epoch))
        sel = epochs == epoch
        out[sel] = order[wanted[sel] % n_blocks]
    return out


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``lr`` at ``step``: linear warm-up, then constant (the paper) or cosine to 0.

    >>> [lr_factor(s, TrainConfig(warmup_steps=3)) for s in range(5)]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.lr_schedule == "constant":
        return 1.0
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _peak_memory_mb(model, optimizer, batch, accelerator) -> float | None:
    """Peak memory of one forward+backward (CUDA: the allocator's peak; CPU: measure_peak_cpu)."""
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    if accelerator.device.type != "cpu":
        return None
    from .utils import measure_peak_cpu

    def step():
        model(batch).backward()  # model: the prepared LossModule

    params = [p for p in model.parameters() if p.requires_grad]
    static = [*model.parameters(), *model.buffers(), *(p.grad for p in params if p.grad is not None)]
    static += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    with torch.random.fork_rng():  # the extra step must not shift the run's random stream
        peak = measure_peak_cpu(step, static)
    optimizer.zero_grad(set_to_none=True)
    return peak / 2**20


# ------------------------------------------------------------------------------------------ train

def train(config: TrainConfig) -> TrainResult:
    """Run (or resume, or reload) the training run ``config`` describes; see the module docstring."""
    from accelerate import Accelerator

    from . import data
    from .utils import seed_everything

    validate(config)  # every field, before anything is built or written
    tokenizer = data.load_tokenizer(config.tokenizer or data.DEFAULT_TOKENIZER_DIR)
    fingerprint = runs.run_fingerprint(config, tokenizer)  # settings + content hashes of base and tokenizer
    out, out_state = runs.check_out_dir(config, fingerprint)
    if out_state == "finished":
        return load_result(out)

    seed_everything(config.seed)
    mixed = ("bf16" if torch.cuda.is_available() else "no") if config.mixed_precision == "auto" else config.mixed_precision
    accelerator = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum)
    model = build_for_training(config, tokenizer)
    blocks = training_blocks(config, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay,
                                  fused=accelerator.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    loss_module, optimizer = accelerator.prepare(LossModule(model, config.loss_chunk), optimizer)
    main = accelerator.is_main_process  # only the main process writes metrics, checkpoints, the model
    with runs.claim_out_dir(config, fingerprint, enabled=main):  # the lock is held until the run ends
        accelerator.wait_for_everyone()
        return training_loop(config, accelerator, model, loss_module, optimizer, scheduler, blocks, tokenizer)


def training_loop(config, accelerator, model, loss_module, optimizer, scheduler, blocks, tokenizer) -> TrainResult:
    """The loop itself, on a claimed ``out_dir``: resume, then per step: forward and backward over
    ``grad_accum`` micro-batches, clip, step the optimiser and schedule, log a row, checkpoint; at the
    end save the final model (``train`` builds everything this takes)."""
    from tqdm.auto import tqdm

    from . import lora

    out, main = Path(config.out_dir), accelerator.is_main_process
    sharded = runs.uses_engine_state(accelerator, config)  # DeepSpeed / FSDP: each process holds a shard
    step, tokens, seconds, resumed_from = 0, 0, 0.0, None
    if (out / CHECKPOINT_DIR).is_dir():
        if sharded:
            state = runs.load_engine_checkpoint(out / CHECKPOINT_DIR, accelerator, scheduler, config)
        else:
            state = load_checkpoint(out / CHECKPOINT_DIR, accelerator.unwrap_model(model), optimizer, scheduler, config)
        step = resumed_from = state["step"]
        tokens, seconds = state["tokens"], state["seconds"]
    if main:
        runs.truncate(out, step)  # drop rows logged after the checkpoint (all of them if there is none)
    accelerator.wait_for_everyone()
    losses = [row["loss"] for row in read_metrics(out)]

    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    peak_mb = None
    tokens_per_step = config.batch_size * config.grad_accum * config.seq_len * accelerator.num_processes
    bar = tqdm(total=config.max_steps, initial=step, desc=out.name, disable=not config.progress)
    stop_at = config.max_steps if config.stop_after is None else min(config.max_steps, config.stop_after)
    while step < stop_at:
        started = time.perf_counter()
        step_loss = 0.0
        for micro in range(config.grad_accum):
            idx = batch_indices(step, micro, config, len(blocks), accelerator.process_index, accelerator.num_processes)
            batch = blocks[idx].to(accelerator.device)  # (B, L)
            # accumulate: processes sync gradients on the last micro-batch only; backward divides by grad_accum
            with accelerator.accumulate(loss_module), accelerator.autocast():
                loss = loss_module(batch)
                accelerator.backward(loss)
            step_loss += loss.item() / config.grad_accum
        if accelerator.num_processes > 1:  # log the mean over every process's share of the batch
            step_loss = accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "mean").item()
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        if config.measure_memory and peak_mb is None and (step >= 2 or stop_at == 1):
            peak_mb = _peak_memory_mb(loss_module, optimizer, batch, accelerator)
        elapsed = time.perf_counter() - started
        seconds += elapsed
        tokens += tokens_per_step
        losses.append(step_loss)
        row = {"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
               "tokens": tokens, "tokens_per_s": tokens_per_step / elapsed, "seconds": seconds}
        if main and (step % config.log_every == 0 or step == config.max_steps):
            runs.append_row(out, row)
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
        bar.update(1)
        if (config.save_every and step % config.save_every == 0) or step == stop_at:
            if sharded:  # every process writes its shard through accelerator.save_state
                runs.save_engine_checkpoint(out, accelerator, scheduler, step, tokens, seconds, config)
            elif main:
                save_checkpoint(out, accelerator.unwrap_model(model), optimizer, scheduler, step, tokens, seconds, config)
            accelerator.wait_for_everyone()
    bar.close()

    unwrapped = accelerator.unwrap_model(model)
    finished = step >= config.max_steps
    if finished and main:
        final = _save_final(out, unwrapped, tokenizer, config)
    else:
        final = lora.merge(_copy_of(unwrapped)) if config.method != "full" else unwrapped
    final.eval()
    result = TrainResult(
        out_dir=str(out), model=final, tokenizer=tokenizer, losses=losses, steps=step, tokens=tokens,
        seconds=seconds, tokens_per_second=tokens / max(seconds, 1e-9),
        trainable_parameters=sum(p.numel() for p in params), total_parameters=_count(final),
        peak_memory_mb=peak_mb, resumed_from=resumed_from, finished=finished,
    )
    if finished and main:
        runs.write_text(out / RESULT_FILE, json.dumps(result.summary(), indent=2) + "\n")  # last: "finished"
    accelerator.wait_for_everyone()
    return result


def _copy_of(model):
    import copy

    return copy.deepcopy(model)


def _count(model) -> int:
    from .models import count_parameters

    return count_parameters(model)


def _save_final(out: Path, model, tokenizer, config: TrainConfig):
    """Save the adapter (LoRA methods) and the merged model + tokenizer under ``model/``; return the merged model.

    Both are swapped in whole (``runs.atomic_write``): a kill leaves the previous ``model/`` or the new one."""
    from . import lora

    if config.method != "full":
        lora.save(model, out / ADAPTER_DIR, overwrite=True)
        model = lora.merge(model)
    model.config.use_cache = False
    with runs.atomic_write(out / MODEL_DIR, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return model


def load_result(out_dir: str | Path) -> TrainResult:
    """A finished run's result, with its saved model (``model/``) loaded in eval mode."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    out = Path(out_dir)
    if not (out / RESULT_FILE).is_file():
        raise ValueError(f"{out} holds no finished run (no {RESULT_FILE}); train it first")
    keep = {f.name for f in dataclasses.fields(TrainResult)} - {"model", "tokenizer", "losses"}
    try:
        summary = json.loads((out / RESULT_FILE).read_text())
        fields = {k: summary[k] for k in keep}
        model = LlamaForCausalLM.from_pretrained(out / MODEL_DIR, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(out / MODEL_DIR))
    except Exception as err:  # a damaged result.json or model/: JSON, key, OS or safetensors errors
        raise ValueError(f"the finished run in {out} is damaged ({err}); re-run with --overwrite to train it again") from None
    losses = [row["loss"] for row in read_metrics(out)]  # strictly increasing steps, or a clear error
    return TrainResult(model=model, tokenizer=tokenizer, losses=losses, **fields)


__all__ = [
    "ADAPTER_DIR", "CHECKPOINT_DIR", "CONFIG_FILE", "METRICS_FILE", "MODEL_DIR", "RESULT_FILE", "LossModule",
    "TrainConfig", "TrainResult", "batch_indices", "build_for_training", "causal_lm_of", "check_group_size",
    "chunked_causal_lm_loss", "extension_config", "load_checkpoint", "load_result", "lr_factor", "model_loss",
    "pretrain_config", "read_metrics", "recipe", "save_checkpoint", "train",
    "training_blocks", "training_loop",
]
