r"""Long-instruction fine-tuning (LongLoRA's SFT stage): prompts, masked labels, padded S2 batches, the run.

**Prompt.** A conversation (:class:`~longlora_kit.sft_data.Example`) is rendered with the model's chat
template when its tokenizer has one (SmolLM2: ``<|im_start|>user ...``). A base model gets the official
LongLoRA prompt, ``[INST] {instruction} [/INST]`` (``supervised-fine-tune.py``, Llama-2 style, no system
prompt), installed as a chat template (:data:`INST_TEMPLATE`) so that ``chat.answer`` and
``longlora-kit chat`` prompt the fine-tuned model exactly as it was trained.

**Labels.** Only the answer is learned: prompt tokens get label ``-100``, which ``cross_entropy``
ignores (the official code does the same):

>>> from longlora_kit.data import load_tokenizer
>>> from longlora_kit.sft_data import parse_record
>>> tok = with_chat_template(load_tokenizer())
>>> ids, labels = encode_example(tok, parse_record({"instruction": "Repeat 7.", "output": "7"}))
>>> tok.decode(ids)
'[INST] Repeat 7. [/INST] 7<|endoftext|>'
>>> tok.decode([t for t in labels if t != IGNORE])  # the answer and its end-of-text: all that has loss
' 7<|endoftext|>'

**Batches: the padding rule.** Samples are never packed into one row (so no token can see another
sample); each batch is *right-padded* to one length. With S2-Attn the group size is the run's, fixed:
``G = group_size_ratio * seq_len`` (``seq_len`` = the longest sample allowed, e.g. 512 -> G = 128), and
a batch is padded to the smallest multiple of G that holds its longest sample. So every length works
(no fixed 8192, no shape error), a sample sees the same groups whatever it is batched with, and a
sample shorter than G is one group: full causal attention, as in the official SFT code. Padding is
masked as keys (``s2attn``: transformers' padding mask becomes a key mask, and-ed with the S2 pattern)
and carries no loss; padded *query* rows compute garbage that nothing reads (no loss, never a key).

>>> padded_length(13, 8), padded_length(16, 8), padded_length(17, 8)
(16, 16, 24)

With the leak-free variant a sample's logits in a padded batch equal its logits alone (tests/test_sft.py).
The paper's variant lets tokens ``0..G/2-1`` see the row's last G/2 positions (its wrap-around): the
padding (masked) for a short sample, but a long sample's *answer* otherwise, so prefer ``attention="s2"`` (leak-free).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import torch

from .config import TrainConfig, check_group_size, validate
from .sft_data import Example, instruction_mix, load_examples
from .train import causal_lm_of, chunked_causal_lm_loss, lr_factor, training_loop

IGNORE = -100  # the label cross_entropy skips (ignore_index)
GENERATED = "longqa"  # instructions= value for the kit's generated long-document QA mix
# The official LongLoRA SFT prompt, [INST] {instruction} [/INST] {output}</s>, as a Jinja chat template.
INST_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<<SYS>>\n{{ m['content'] }}\n<</SYS>>\n\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)


# --------------------------------------------------------------------------------------------------
# Prompt and labels


def with_chat_template(tokenizer):
    """``tokenizer``, given the official ``[INST]`` template if it has no chat template of its own."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = INST_TEMPLATE
    return tokenizer


def encode_example(tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one conversation; labels are ``-100`` on everything but the last answer.

    The prompt (all turns before the answer, with the template's generation prompt) and the answer are
    rendered as text, then tokenized apart and joined, so the boundary is exact."""
    messages = list(example.messages)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the tokenizer's chat template does not render the prompt as a prefix of the whole "
                         "conversation, so the answer cannot be separated; set tokenizer.chat_template = "
                         "sft.INST_TEMPLATE (or a template with that property)")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids


def encode_examples(tokenizer, examples: list[Example], max_length: int) -> tuple[list[tuple], Counter]:
    """Encode ``examples``; one longer than ``max_length`` tokens is skipped and counted, not cut (cutting
    would drop the answer)."""
    encoded, skipped = [], Counter()
    for example in examples:
        ids, labels = encode_example(tokenizer, example)
        if len(ids) > max_length:
            skipped[f"over-long (> seq_len={max_length} tokens)"] += 1
        else:
            encoded.append((ids, labels))
    return encoded, skipped


# --------------------------------------------------------------------------------------------------
# Padded batches


def padded_length(longest: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``longest`` (the padding rule)."""
    return -(-longest // multiple) * multiple


@dataclasses.dataclass
class Batch:
    """A right-padded batch: ``input_ids``, ``labels`` (-100 on prompt and padding), ``attention_mask``
    (1 = real token), all (B, L); ``group_size`` = the run's S2 group G (None: full attention)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    group_size: int | None = None

    def to(self, device) -> Batch:
        return Batch(self.input_ids.to(device), self.labels.to(device), self.attention_mask.to(device), self.group_size)


def collate(samples: list[tuple], pad_id: int, group_size: int | None = None, length: int | None = None) -> Batch:
    """Right-pad ``(ids, labels)`` samples to :func:`padded_length` of the longest (multiple of G, or of 1),
    or of ``length`` if that is longer.

    >>> b = collate([([5, 6, 7], [-100, 6, 7]), ([8], [8])], pad_id=0, group_size=2)
    >>> b.input_ids.tolist(), b.labels.tolist(), b.attention_mask.tolist()
    ([[5, 6, 7, 0], [8, 0, 0, 0]], [[-100, 6, 7, -100], [8, -100, -100, -100]], [[1, 1, 1, 0], [1, 0, 0, 0]])
    """
    length = padded_length(max(length or 1, *(len(ids) for ids, _ in samples)), group_size or 1)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)  # (B, L)
    labels = torch.full((len(samples), length), IGNORE, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(samples), length), dtype=torch.long)  # (B, L)
    for row, (sample_ids, sample_labels) in enumerate(samples):
        n = len(sample_ids)
        ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(sample_ids), torch.tensor(sample_labels), 1
    return Batch(ids, labels, mask, group_size)


class Batches:
    """The encoded samples, indexed like ``train``'s blocks: ``batches[idx]`` collates those samples."""

    def __init__(self, samples: list[tuple], pad_id: int, group_size: int | None):
        self.samples, self.pad_id, self.group_size = samples, pad_id, group_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: torch.Tensor) -> Batch:
        return collate([self.samples[i] for i in idx.tolist()], self.pad_id, self.group_size)


# --------------------------------------------------------------------------------------------------
# Loss


def hidden_states(model, batch: Batch) -> torch.Tensor:
    """The last hidden states ``(B, L, d)`` of ``batch``, with S2 groups of the run's G.

    S2 reads ``G = config.group_size_ratio * L``; the batch's L is a multiple of the run's G, so the
    ratio for this batch is ``G / L`` (a whole number of groups by construction)."""
    causal = causal_lm_of(model)
    if batch.group_size is not None:
        causal.config.group_size_ratio = batch.group_size / batch.input_ids.shape[1]
    return causal.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state


def masked_lm_loss(model, batch: Batch, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed NLL over the answer tokens, how many there are)`` for ``batch``, via the chunked loss."""
    causal = causal_lm_of(model)
    hidden = hidden_states(model, batch)  # (B, L, d)
    targets = batch.labels[:, 1:]  # (B, L-1): position t predicts token t+1
    mean_over_all = chunked_causal_lm_loss(hidden, causal.lm_head, batch.labels, chunk)  # ignored targets add 0
    return mean_over_all * targets.numel(), (targets != IGNORE).sum()


class SFTLoss(torch.nn.Module):
    """Mean NLL per answer token of a :class:`Batch`: what ``train.training_loop`` calls (and accelerate wraps)."""

    def __init__(self, model, chunk: int = 2048):
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, batch: Batch) -> torch.Tensor:
        total, count = masked_lm_loss(self.model, batch, self.chunk)
        return total / count.clamp(min=1)


# --------------------------------------------------------------------------------------------------
# The run


def sft_config(base_model: str = "runs/extend/model", out_dir: str = "runs/sft", instructions: str = GENERATED,
               profile: str | None = None, **overrides) -> TrainConfig:
    """SFT of ``base_model`` at its full context: LoRA+ and S2-Attn as in the extension, generated
    long-document QA (3/4 long, LongAlpaca's share) unless ``instructions`` names a file."""
    from .chat import context_limit
    from .profile import pick

    fields = dict(
        out_dir=out_dir, base_model=base_model, instructions=instructions, method="lora+", attention="s2",
        lr=5e-4, lr_schedule="constant", long_fraction=0.75,  # 1e-3 measured worse on the tiny Llama (exact match 0.30 vs 0.45)
        warmup_steps=pick({"smoke": 2, "workshop": 10, "full": 20}, profile),
        max_steps=pick({"smoke": 8, "workshop": 150, "full": 600}, profile),
        batch_size=pick({"smoke": 2, "workshop": 4, "full": 8}, profile),
        n_documents=pick({"smoke": 32, "workshop": 600, "full": 3000}, profile),
    )
    base = Path(base_model)
    if (base / "config.json").is_file():
        from .build import base_config

        fields["seq_len"] = context_limit(base_config(base_model))
    if (base / "tokenizer.json").is_file():
        fields["tokenizer"] = base_model
    return TrainConfig(**{**fields, **overrides})


def group_size_of(config: TrainConfig) -> int | None:
    """The run's S2 group size ``G = group_size_ratio * seq_len``, or None for full attention."""
    return check_group_size(config.seq_len, config.group_size_ratio) if config.attention.startswith("s2") else None


def sft_examples(config: TrainConfig) -> tuple[list[Example], Counter]:
    """The run's examples: the generated mix (``instructions="longqa"``) or a file's, with skip counts."""
    if config.instructions == GENERATED:
        low = max(32, config.seq_len // 4)  # a fact needs ~25 tokens; leave ~48 for template, question, answer
        lengths = (low, max(low, config.seq_len - 48))
        return instruction_mix(config.n_documents, config.long_fraction, lengths, config.data_seed), Counter()
    return load_examples(config.instructions)


def samples_hash(samples: list[tuple]) -> str:
    """Content hash of the encoded samples (data, prompt template and tokenizer in one): part of the run's
    fingerprint, so changed data is a different run, never a stale reload."""
    return hashlib.sha256(json.dumps(samples).encode()).hexdigest()


def train_sft(config: TrainConfig):
    """Run (or resume, or reload) the SFT run ``config`` describes, through ``train.training_loop``.

    Returns ``(TrainResult, report)``; ``report`` counts the examples used and skipped (by reason)."""
    from accelerate import Accelerator

    from . import data, runs
    from .build import build_for_training
    from .utils import seed_everything

    if config.instructions is None:
        raise ValueError(f"instructions=None: SFT needs data; pass a LongAlpaca .json, a chat .jsonl, a "
                         f"save_to_disk folder, or {GENERATED!r}")
    validate(config)
    tokenizer = with_chat_template(data.load_tokenizer(config.tokenizer or data.DEFAULT_TOKENIZER_DIR))
    examples, skipped = sft_examples(config)
    samples, too_long = encode_examples(tokenizer, examples, config.seq_len)
    skipped += too_long
    report = {"examples": len(samples), "skipped": dict(skipped), "group_size": group_size_of(config),
              "long": sum(e.kind == "long" for e in examples), "short": sum(e.kind == "short" for e in examples)}
    if not samples:
        raise ValueError(f"no usable examples in instructions={config.instructions!r} (skipped: {dict(skipped)})")
    fingerprint = {**runs.run_fingerprint(config, tokenizer), "samples_sha256": samples_hash(samples)}
    out, out_state = runs.check_out_dir(config, fingerprint)
    if out_state == "finished":
        from .train import load_result

        return load_result(out), report

    seed_everything(config.seed)
    mixed = ("bf16" if torch.cuda.is_available() else "no") if config.mixed_precision == "auto" else config.mixed_precision
    accelerator = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum)
    model = build_for_training(config, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    loss_module, optimizer = accelerator.prepare(SFTLoss(model, config.loss_chunk), optimizer)
    batches = Batches(samples, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                      group_size_of(config))
    with runs.claim_out_dir(config, fingerprint, enabled=accelerator.is_main_process):
        accelerator.wait_for_everyone()
        result = training_loop(config, accelerator, model, loss_module, optimizer, scheduler, batches, tokenizer)
    return result, report


# ---------------------------------------------------------------------------------------------- CLI


__all__ = ["Batch", "Batches", "GENERATED", "IGNORE", "INST_TEMPLATE", "SFTLoss", "collate", "encode_example",
           "encode_examples", "group_size_of", "hidden_states", "masked_lm_loss", "padded_length", "samples_hash", "sft_config", "sft_examples",
           "train_sft", "with_chat_template"]
