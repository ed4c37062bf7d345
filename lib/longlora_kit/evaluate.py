"""Evaluation: perplexity at several context lengths, and passkey retrieval on a depth × length grid.

Both always run the model in **eval mode with full attention**, as the paper does: S2-Attn is a
training-time approximation (the kit's S2 implementations fall back to full causal attention when
``model.training`` is False, unless a config asks for ``sparse_attention_in_eval``, the Table 6
ablation).

**Perplexity with a sliding window.** A stream of ``N`` tokens is read in windows of ``L`` tokens
whose starts are ``S`` (the stride) apart. Each window scores only the tokens the previous window did
not score, so every token is scored exactly once and has at least ``L − S`` tokens of context (the
first window's tokens excepted)::

    window k = tokens [b_k, b_k + L), b_k = min(kS, end_{k-1} − 1)   scores tokens [max(b_k + 1, end_{k-1}), b_k + L)
    PPL = exp( Σ_t −log p(x_t | window context) / #scored )

(LongLoRA's ``eval.py`` averages the loss over the *whole* window, so tokens near a window's start,
with almost no context, count again and again; here they do not.)

**Passkey.** ``data.passkey_prompt`` hides ``The pass key is K. Remember it. K is the pass key.`` (K five
different digits) at a depth of a filler text of ``L`` tokens and asks for it; the first number of the
greedy continuation must be exactly K.

>>> from longlora_kit.models import build_model, tiny_config
>>> model = build_model(tiny_config(vocab_size=64))
>>> ids = torch.randint(0, 64, (200,))
>>> round(perplexity(model, ids, length=64, stride=32).perplexity) > 1
True
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .utils import format_table  # noqa: F401  (re-exported: evaluate.format_table is how notebooks print)


@dataclass
class PerplexityResult:
    length: int          # window length L
    stride: int          # window start spacing S
    tokens_scored: int
    nll: float           # mean negative log-likelihood, nats per token
    perplexity: float    # exp(nll)


def _causal(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _windows(n_tokens: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) of every sliding window over ``n_tokens`` tokens.

    Window ``k`` starts at ``min(k·S, end_{k-1} − 1)``: with ``S = L`` consecutive windows overlap by one
    token, so the first new token of a window still has a token of context and none is skipped.
    """
    windows, previous_end, k = [], 0, 0
    while previous_end < n_tokens:
        begin = k * stride if k == 0 else min(k * stride, previous_end - 1)
        end = min(begin + length, n_tokens)
        windows.append((begin, end, max(begin + 1, previous_end)))
        previous_end, k = end, k + 1
    return windows


@torch.no_grad()
def token_nll(model, token_ids: torch.Tensor, length: int, stride: int | None = None, batch_size: int = 4,
              loss_chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL under the sliding window: returns (positions (M,), nll (M,)) for every scored token."""
    if token_ids.dim() != 1:
        raise ValueError(f"token_ids must be one stream of shape (N,), got shape {tuple(token_ids.shape)}")
    stride = stride or max(1, length // 4)
    if not 1 <= stride <= length:
        raise ValueError(f"stride must lie in [1, length={length}], got {stride}")
    if len(token_ids) < 2:
        raise ValueError(f"need at least 2 tokens to score, got {len(token_ids)}")
    causal = _causal(model)
    was_training = causal.training
    causal.eval()
    device = next(causal.parameters()).device
    windows = _windows(len(token_ids), length, stride)
    positions, nlls = [], []
    # windows of equal length go through the model together
    for size in sorted({end - begin for begin, end, _ in windows}, reverse=True):
        same = [w for w in windows if w[1] - w[0] == size]
        for i in range(0, len(same), batch_size):
            group = same[i : i + batch_size]
            batch = torch.stack([token_ids[b:e] for b, e, _ in group]).to(device)  # (B, size)
            hidden = causal.model(input_ids=batch).last_hidden_state  # (B, size, d)
            for row, (begin, end, first) in enumerate(group):
                targets = torch.arange(first, end)  # absolute positions scored in this window
                h = hidden[row, targets - begin - 1]  # (n, d): the state before each target
                for c in range(0, len(targets), loss_chunk):
                    logits = causal.lm_head(h[c : c + loss_chunk]).float()  # (n_c, V)
                    nll = F.cross_entropy(logits, token_ids[targets[c : c + loss_chunk]].to(device), reduction="none")
                    nlls.append(nll.cpu())
                positions.append(targets)
    causal.train(was_training)
    positions, nlls = torch.cat(positions), torch.cat(nlls)
    order = positions.argsort()
    return positions[order], nlls[order]


def perplexity(model, token_ids: torch.Tensor, length: int, stride: int | None = None, batch_size: int = 4,
               ) -> PerplexityResult:
    """Sliding-window perplexity of ``model`` on the stream ``token_ids`` (N,) with windows of ``length``
    tokens, ``stride`` apart (default ``length // 4``); every token after the first is scored once."""
    stride = stride or max(1, length // 4)
    _, nll = token_nll(model, token_ids, length, stride, batch_size)
    mean = nll.mean().item()
    return PerplexityResult(length=length, stride=stride, tokens_scored=len(nll), nll=mean, perplexity=math.exp(mean))


@torch.no_grad()
def loss_by_position(model, token_ids: torch.Tensor, length: int, batch_size: int = 4) -> torch.Tensor:
    """Mean NLL at each position 1..length-1 over non-overlapping windows of ``length`` tokens: (length-1,).
    Shows where a model stops coping (e.g. beyond its trained context)."""
    n = len(token_ids) // length
    if n == 0:
        raise ValueError(f"need at least length={length} tokens, got {len(token_ids)}")
    causal = _causal(model)
    was_training = causal.training
    causal.eval()
    device = next(causal.parameters()).device
    blocks = token_ids[: n * length].view(n, length)
    total = torch.zeros(length - 1)
    for i in range(0, n, batch_size):
        batch = blocks[i : i + batch_size].to(device)  # (B, L)
        logits = causal(input_ids=batch).logits[:, :-1].float()  # (B, L-1, V)
        nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")  # (B, L-1)
        total += nll.sum(0).cpu()
    causal.train(was_training)
    return total / n


# ------------------------------------------------------------------------------------------ passkey

@dataclass
class PasskeyResult:
    lengths: list[int]
    depths: list[float]
    trials: int
    accuracy: list[list[float]]          # [depth][length], fraction of exact matches
    answers: list[dict] = field(default_factory=list, repr=False)  # every trial: length, depth, key, answer

    def by_length(self) -> list[float]:
        """Accuracy per length, averaged over depths."""
        return [sum(row[j] for row in self.accuracy) / len(self.accuracy) for j in range(len(self.lengths))]


@torch.no_grad()
def greedy_continuation(model, input_ids: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Greedy decoding of ``n_tokens`` tokens after ``input_ids`` (B, L) with full recomputation (no cache,
    so it works for any attention implementation): returns (B, n_tokens)."""
    causal = _causal(model)
    ids = input_ids
    new = []
    for _ in range(n_tokens):
        hidden = causal.model(input_ids=ids).last_hidden_state[:, -1]  # (B, d)
        token = causal.lm_head(hidden).argmax(-1, keepdim=True)  # (B, 1)
        new.append(token)
        ids = torch.cat([ids, token], dim=1)
    return torch.cat(new, dim=1)


def passkey_accuracy(model, tokenizer, lengths, depths=(0.0, 0.25, 0.5, 0.75, 1.0), trials: int = 5,
                     seed: int = 0) -> PasskeyResult:
    """Exact-match passkey accuracy for each (depth, length): ``trials`` prompts per cell, each with its
    own random key, answered greedily (6 new tokens: a space and 5 digits) in eval mode."""
    from .data import passkey_prompt, score_passkey

    causal = _causal(model)
    was_training = causal.training
    causal.eval()
    device = next(causal.parameters()).device
    accuracy, answers = [], []
    for d_index, depth in enumerate(depths):
        row = []
        for l_index, length in enumerate(lengths):
            prompts = [passkey_prompt(tokenizer, length, depth, seed=seed + 1000 * (d_index * len(lengths) + l_index) + t)
                       for t in range(trials)]
            batch = torch.tensor([p.input_ids for p in prompts], device=device)  # (trials, length)
            generated = greedy_continuation(causal, batch, 6)
            for prompt, out in zip(prompts, generated.tolist()):
                text = tokenizer.decode(out)
                answers.append({"length": length, "depth": depth, "key": prompt.key, "answer": text,
                                "correct": score_passkey(text, prompt.key)})
            row.append(sum(a["correct"] for a in answers[-trials:]) / trials)
        accuracy.append(row)
    causal.train(was_training)
    return PasskeyResult(lengths=list(lengths), depths=list(depths), trials=trials, accuracy=accuracy, answers=answers)


# ------------------------------------------------------------------------------------- model loading

def check_model_folder(path: str | Path, name: str = "path") -> Path:
    """``path`` if it holds a saved model (``config.json`` + safetensors weights); else a ValueError that
    says what it holds instead (nothing, a run folder, a LoRA adapter) and what to pass."""
    path = Path(path)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return path
    if (path / "model" / "config.json").is_file():
        why = f"it is a run folder; pass its model, {path / 'model'}"
    elif (path / "adapter_config.json").is_file() or (path / "longlora_run.json").is_file():
        why = f"it holds a LoRA adapter; pass the run's merged model, {path.parent / 'model'}"
    else:
        why = "it does not exist" if not path.exists() else "no config.json and *.safetensors in it"
    raise ValueError(f"{name}={path} holds no saved model ({why}); models come from `longlora-kit pretrain` "
                     "and `longlora-kit extend` (their out/model folder)")


def load_for_eval(path: str | Path, target_length: int | None = None, rope_method: str = "linear"):
    """A saved model (``save_pretrained`` folder, e.g. a run's ``model/``) in eval mode; with
    ``target_length`` its RoPE is first extended by ``rope.extend_config`` (PI with no training)."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, LlamaForCausalLM

    from . import rope

    path = check_model_folder(path)
    try:
        config = AutoConfig.from_pretrained(path)
        if target_length is not None and target_length != config.max_position_embeddings:
            config = rope.extend_config(config, target_length, method=rope_method)
        config.use_cache = False
        return LlamaForCausalLM.from_pretrained(path, config=config, dtype=torch.float32).eval()
    except (OSError, SafetensorError) as err:  # truncated or garbage files: one line, not a traceback
        raise ValueError(f"could not load the model in {path} ({err}); save it again") from err


# ------------------------------------------------------------------------------------------ suites

@dataclass
class EvalSettings:
    """What ``evaluate_model`` measures (sizes from the profile via :func:`eval_settings`)."""

    lengths: list[int]
    eval_tokens: int                     # tokens of the validation stream scored at each length
    passkey_lengths: list[int]
    passkey_depths: list[float]
    passkey_trials: int
    data: str = "synthetic"
    max_distance: int | None = None      # synthetic: longest gap between two mentions of a key
    n_documents: int = 400
    val_fraction: float = 0.05
    data_seed: int = 0


def eval_settings(trained_length: int = 256, factor: int = 4, profile: str | None = None, **overrides) -> EvalSettings:
    """Evaluation sizes for a model pre-trained at ``trained_length`` and extended ``factor``×."""
    from .budgets import EVAL, TINY_RECIPE, at

    lengths = [trained_length * k for k in (1, 2, 4) if k <= factor]
    table = at(EVAL, profile)
    settings = dict(
        lengths=lengths,
        eval_tokens=table["tokens_per_longest"] * lengths[-1],
        passkey_lengths=lengths,
        passkey_depths=table["passkey_depths"],
        passkey_trials=table["passkey_trials"],
        n_documents=at(TINY_RECIPE["extend"], profile)["n_documents"],  # the extension's corpus size
        max_distance=trained_length * factor,  # keys mentioned up to the extended length apart
    )
    settings.update(overrides)
    return EvalSettings(**settings)


@dataclass
class ModelEval:
    name: str
    perplexity: dict[int, float]         # length -> PPL
    passkey: PasskeyResult
    answer_nll: dict[int, dict[str, float]] = field(default_factory=dict)  # length -> {"near", "far"}
    near_far_split: int = 0              # answers whose record is at most this far back count as "near"

    def row(self) -> dict:
        out = {"model": self.name}
        out.update({f"ppl@{k}": round(v, 3) for k, v in self.perplexity.items()})
        if self.answer_nll:
            longest = max(self.answer_nll)
            out[f"answer nll far@{longest}"] = round(self.answer_nll[longest]["far"], 2)
        out.update({f"passkey@{k}": round(a, 2) for k, a in zip(self.passkey.lengths, self.passkey.by_length())})
        return out


def evaluation_data(settings: EvalSettings, tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The validation stream (cut to ``settings.eval_tokens``) and its answer digits: (stream (N,),
    answer positions (M, 5), record distances (M,)); answers are empty for non-synthetic data."""
    from .data import join_documents, load_splits, stream_answers

    _, val = load_splits(settings.data, tokenizer, settings.n_documents, settings.val_fraction, settings.data_seed,
                         settings.max_distance)
    stream = join_documents(val, tokenizer.eos_token_id)[: settings.eval_tokens]
    if settings.data == "synthetic":
        positions, distances = stream_answers(val, tokenizer)
        keep = positions[:, -1] < len(stream)
        return stream, positions[keep], distances[keep]
    return stream, torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, dtype=torch.long)


def evaluate_model(name: str, model, tokenizer, settings: EvalSettings, data=None) -> ModelEval:
    """Perplexity at every ``settings.lengths``, the loss on answer digits whose record is near (within the
    shortest length) or far, and the passkey grid, for one model. ``data`` = :func:`evaluation_data`."""
    stream, positions, distances = data if data is not None else evaluation_data(settings, tokenizer)
    split = settings.lengths[0]
    ppl, answer_nll = {}, {}
    for length in settings.lengths:
        _, nll = token_nll(model, stream, length)  # nll[i] scores token i + 1
        ppl[length] = math.exp(nll.mean().item())
        if len(positions):
            answer = nll[positions - 1].mean(1)  # (M,) mean over the 5 digits
            near, far = distances <= split, distances > split
            answer_nll[length] = {"near": answer[near].mean().item() if near.any() else float("nan"),
                                  "far": answer[far].mean().item() if far.any() else float("nan")}
    passkey = passkey_accuracy(model, tokenizer, settings.passkey_lengths, settings.passkey_depths,
                               settings.passkey_trials)
    return ModelEval(name=name, perplexity=ppl, passkey=passkey, answer_nll=answer_nll, near_far_split=split)


def save_evals(evals: list[ModelEval], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"name": e.name, "perplexity": e.perplexity, "answer_nll": e.answer_nll, "passkey": asdict(e.passkey)}
            for e in evals]
    from .runs.atomic import write_text

    return write_text(path, json.dumps(rows, indent=2) + "\n")  # a reader sees the old file or the new one
