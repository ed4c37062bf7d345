"""What a training run is: :class:`TrainConfig` (its settings), :class:`TrainResult` (what it gave).

These dataclasses sit *below* every module that uses them (``train``, ``runs``' callers, ``presets``,
``experiments.toy_runner``), so none of those has to import ``train`` just to name a setting.

A config is checked as a whole by :func:`validate` before anything is written, so a bad value fails
on the spot with the field's name and the fix, not at the first step of a run that already claimed
its folder:

>>> validate(TrainConfig(loss_chunk=0))
Traceback (most recent call last):
...
ValueError: loss_chunk must be >= 1, got 0
>>> validate(TrainConfig(attention="s2", seq_len=256)) is None
True

One spelling for each choice, used by every module (``TrainConfig``, presets, memory, the experiments,
the CLI): attention is ``"full"``, ``"s2"`` or ``"s2_paper"``; transformers' names for them live in
:func:`attn_implementation` only. An old spelling is refused, naming the new one:

>>> attn_implementation("s2"), attn_implementation("full")
('s2_attn', 'sdpa')
>>> attn_implementation("sdpa")
Traceback (most recent call last):
...
ValueError: attention='sdpa' is the old spelling; write attention='full'

:meth:`TrainConfig.fingerprint` is the part that decides what the run computes; the bookkeeping fields
(``RUNTIME_FIELDS``) may change between a run and its resumption:

>>> "save_every" in TrainConfig().fingerprint(), "lr" in TrainConfig().fingerprint()
(False, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Attention in training: full causal attention, S2-Attn (shift in half the heads), the paper's roll variant.
ATTENTIONS = ("full", "s2", "s2_paper")
#: What trains (``lora.apply``): every parameter, LoRA, LoRA + embeddings and norms (the paper's LoRA+), or half.
METHODS = ("full", "lora", "lora+", "lora+embed", "lora+norm")
# transformers' attn_implementation for each; the S2 names exist once ``s2attn.register()`` has run.
_ATTN_IMPLEMENTATION = {"full": "sdpa", "s2": "s2_attn", "s2_paper": "s2_attn_paper"}
_OLD_ATTENTION = {"sdpa": "full", "s2_attn": "s2", "s2_attn_paper": "s2_paper"}  # wave-1 spellings
SCHEDULES = ("constant", "cosine")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
# Fields that change how a run is watched or stored, not what it computes: a run may resume with others.
RUNTIME_FIELDS = ("out_dir", "save_every", "log_every", "progress", "stop_after", "overwrite", "measure_memory",
                  "engine_checkpoint")


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as ``train_config.json`` in ``out_dir``."""

    out_dir: str = "runs/pretrain"
    # --- model and tokenizer
    base_model: str | None = None       # a save_pretrained folder; None = a fresh tiny Llama
    model_overrides: dict = field(default_factory=dict)  # tiny_config fields for a fresh model
    tokenizer: str | None = None        # tokenizer folder; None = the kit's tokenizer
    # --- context: PI to target_length (None = keep the model's RoPE)
    seq_len: int = 256
    target_length: int | None = None
    rope_method: str = "linear"
    # --- what trains and how attention looks in training
    method: str = "full"                # full / lora / lora+ / lora+embed / lora+norm
    lora_r: int = 8
    lora_alpha: float = 16
    lora_dropout: float = 0.0
    attention: str = "full"             # full / s2 / s2_paper (ATTENTIONS)
    group_size_ratio: float = 0.25      # S2-Attn group G = ratio * seq_len
    attention_pattern: str | None = None  # Table 6 ablations (see s2attn); None = "s2"
    # --- data
    data: str = "synthetic"             # synthetic / stdlib / mix / hf:<name or folder>
    max_distance: int | None = None     # synthetic: longest gap between two mentions of a key (None = 1024)
    n_documents: int = 400
    val_fraction: float = 0.05
    data_seed: int = 0
    # --- instruction fine-tuning (sft.py): None = not an SFT run
    instructions: str | None = None     # LongAlpaca .json / chat .jsonl / save_to_disk folder / "longqa"
    long_fraction: float = 0.75         # "longqa": share of long-document QA (LongAlpaca-12k: 9k of 12k)
    # --- optimisation
    max_steps: int = 100
    batch_size: int = 8                 # sequences per micro-batch (per process)
    grad_accum: int = 1
    lr: float = 1e-3
    warmup_steps: int = 10
    lr_schedule: str = "constant"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    loss_chunk: int = 2048              # positions per chunk of the cross-entropy
    mixed_precision: str = "auto"       # auto = bf16 on CUDA, fp32 elsewhere; "no" / "bf16"
    seed: int = 0
    # --- bookkeeping (RUNTIME_FIELDS: do not change the result)
    save_every: int = 0                 # 0 = a checkpoint at the end only
    log_every: int = 1
    progress: bool = True
    stop_after: int | None = None       # stop after this step as if killed (for resume tests)
    overwrite: bool = False             # replace a previous kit run in out_dir
    measure_memory: bool = True         # measure the peak memory of one training step
    engine_checkpoint: bool = False     # checkpoint with accelerator.save_state even without DeepSpeed/FSDP

    def fingerprint(self) -> dict:
        """The fields that determine what the run computes (JSON-ready)."""
        return {k: v for k, v in jsonable(asdict(self)).items() if k not in RUNTIME_FIELDS}


@dataclass
class TrainResult:
    """What ``train.train`` returns (and writes to ``result.json``, minus the model)."""

    out_dir: str
    model: Any = field(repr=False)      # the trained model as a plain LlamaForCausalLM, eval mode
    tokenizer: Any = field(repr=False)
    losses: list[float]                 # one per optimiser step (mean over its micro-batches)
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float
    trainable_parameters: int
    total_parameters: int
    peak_memory_mb: float | None        # one training step's peak (allocator-measured), MB
    resumed_from: int | None = None
    finished: bool = True

    SUMMARY_FIELDS = ("out_dir", "steps", "tokens", "seconds", "tokens_per_second", "trainable_parameters",
                      "total_parameters", "peak_memory_mb", "resumed_from", "finished")

    def summary(self) -> dict:
        out = {k: getattr(self, k) for k in self.SUMMARY_FIELDS}
        out["first_loss"] = self.losses[0] if self.losses else None
        out["final_loss"] = self.losses[-1] if self.losses else None
        return out


def jsonable(value):
    """``value`` with tuples turned into lists, as ``json`` would read it back.

    >>> jsonable({"betas": (0.9, 0.95)})
    {'betas': [0.9, 0.95]}
    """
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def check_group_size(seq_len: int, ratio: float) -> int:
    """S2-Attn's group size ``G = ratio·seq_len`` (``s2attn.group_size_for``), with ``seq_len`` named in the
    error: ``G`` must be an even whole number of tokens dividing ``seq_len``.

    >>> check_group_size(1024, 0.25)
    256
    """
    from .s2attn import group_size_for

    try:
        return group_size_for(seq_len, ratio)
    except ValueError as err:
        raise ValueError(f"seq_len={seq_len} does not fit S2-Attn groups: {err}") from None


def check_attention(attention: str, name: str = "attention") -> str:
    """``attention`` if it is one of :data:`ATTENTIONS`; an old spelling gets an error naming the new one."""
    if attention in _OLD_ATTENTION:
        raise ValueError(f"{name}={attention!r} is the old spelling; write {name}={_OLD_ATTENTION[attention]!r}")
    _choice(name, attention, ATTENTIONS)
    return attention


def attn_implementation(attention: str) -> str:
    """transformers' ``attn_implementation`` for the kit's ``attention`` name (the only place they meet).

    The S2 names are known to transformers once ``s2attn.register()`` has run; :func:`is_s2` says when
    that is needed.
    """
    return _ATTN_IMPLEMENTATION[check_attention(attention)]


def is_s2(attention: str) -> bool:
    """Whether ``attention`` is one of the S2-Attn variants (it needs ``s2attn.register()`` and a group size).

    >>> [is_s2(a) for a in ATTENTIONS]
    [False, True, True]
    """
    return check_attention(attention) != "full"


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; choose one of {', '.join(map(str, choices))}")


def _at_least(config: TrainConfig, low: int, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")


def validate(config: TrainConfig) -> None:
    """Raise a ``ValueError`` naming the first bad field of ``config`` and the fix; return None if all fit."""
    from .patterns import PATTERNS
    from .rope import EXTEND_METHODS

    _choice("method", config.method, METHODS)
    check_attention(config.attention)
    _choice("lr_schedule", config.lr_schedule, SCHEDULES)
    _choice("rope_method", config.rope_method, EXTEND_METHODS)
    _choice("mixed_precision", config.mixed_precision, MIXED_PRECISIONS)
    if config.attention_pattern is not None:
        _choice("attention_pattern", config.attention_pattern, PATTERNS)
    _at_least(config, 1, "max_steps", "batch_size", "grad_accum", "seq_len", "loss_chunk", "log_every", "lora_r",
              "n_documents")
    _at_least(config, 0, "warmup_steps", "save_every", "seed", "data_seed")  # save_every 0 = only at the end
    if config.stop_after is not None:
        _at_least(config, 1, "stop_after")
    for name in ("lr", "lora_alpha", "max_grad_norm"):  # max_grad_norm may be inf (no clipping)
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and value > 0 and (math.isfinite(value) or name == "max_grad_norm")):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not 0 < config.val_fraction < 1:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {config.val_fraction!r}")
    if not (isinstance(config.long_fraction, (int, float)) and 0 <= config.long_fraction <= 1):
        raise ValueError(f"long_fraction must lie in [0, 1] (share of long QA; LongAlpaca: 0.75), got {config.long_fraction!r}")
    if config.instructions is not None and not (isinstance(config.instructions, str) and config.instructions.strip()):
        raise ValueError(f"instructions={config.instructions!r} must name a .json / .jsonl file, a save_to_disk "
                         "folder, or 'longqa' (or be None when not fine-tuning on instructions)")
    if is_s2(config.attention):
        check_group_size(config.seq_len, config.group_size_ratio)
    if config.target_length is not None and config.seq_len > config.target_length:
        raise ValueError(f"seq_len={config.seq_len} exceeds target_length={config.target_length}; "
                         f"train at most at the extended length")


__all__ = ["ATTENTIONS", "METHODS", "MIXED_PRECISIONS", "RUNTIME_FIELDS", "SCHEDULES", "TrainConfig", "TrainResult",
           "attn_implementation", "check_attention", "check_group_size", "is_s2", "jsonable", "validate"]
