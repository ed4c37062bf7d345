"""Measuring the real model (SmolLM2-135M, trained to 8k) beyond and within its context.

Three measurements, each one function; :mod:`longlora_kit.real_report` runs them cell by cell and
writes ``docs/real_model.md``.

**Perplexity by position.** One forward pass over a long stretch of real text (``L`` tokens), the
negative log-likelihood of every token given *all* tokens before it, averaged over position buckets
(0-4k, 4k-8k, ...). A model that cannot use positions past its trained length shows it at once: the
bucket past 8k blows up while the earlier ones stay put (causal attention: a token never sees later
ones, so the first buckets are the same whatever ``L`` is)::

    nll_t = -log p(x_t | x_0 .. x_{t-1}),   PPL(bucket k) = exp(mean of nll_t over t in [k·B, (k+1)·B))

**Zero-shot context extension.** The same weights loaded with a stretched RoPE (``rope.extend_config``,
8k -> 16k, factor 2) and no training: ``extrapolation`` (RoPE as trained), ``pi`` (linear position
interpolation), ``ntk`` (NTK-aware base), ``dynamic`` (dynamic NTK) and ``yarn``.

**Passkey.** ``data.passkey_prompt`` (the Position Interpolation paper's wording) answered greedily
by ``generate`` with a KV cache: one forward over the prompt, then one cheap step per answer token
(``evaluate.greedy_continuation`` recomputes the whole prompt per token: 8 x 200 s at 16k on a CPU).

**The texts** exist on every machine with Python, nothing to download: ``python`` is the standard
library's ``_pydecimal.py`` (Python source, ~60k SmolLM2 tokens), ``prose`` is the English of the
Python reference manual that CPython ships for ``help()`` (``pydoc_data.topics``, ~100k tokens, PSF
licence). No registry package with real English books installs offline with a clean licence and a
fixed text, so the prose is technical English: honest, but not a novel.

>>> {m: zero_shot_config(_smollm2_like(), m).rope_parameters["rope_type"] for m in ZERO_SHOT}
{'extrapolation': 'default', 'pi': 'linear', 'ntk': 'default', 'dynamic': 'dynamic', 'yarn': 'yarn'}
"""

from __future__ import annotations

import copy
import math
import sysconfig
from pathlib import Path

import torch
import torch.nn.functional as F

from . import rope

#: Zero-shot methods: name -> ``rope.extend_config`` method (None: RoPE as trained, i.e. extrapolation).
ZERO_SHOT = {"extrapolation": None, "pi": "linear", "ntk": "ntk", "dynamic": "dynamic", "yarn": "yarn"}
TARGET_LENGTH = 16384  # 2x SmolLM2's 8192
BUCKET = 4096
TEXTS = ("python", "prose")


def _smollm2_like():
    """A config with SmolLM2-135M's RoPE (for the doctests; no weights)."""
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                       max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 1e5})


def zero_shot_config(config, method: str, target_length: int = TARGET_LENGTH):
    """A copy of ``config`` with RoPE prepared for ``target_length`` by ``method`` (a ``ZERO_SHOT`` key).

    >>> c = zero_shot_config(_smollm2_like(), "pi")
    >>> c.rope_parameters["rope_type"], c.rope_parameters["factor"], c.max_position_embeddings
    ('linear', 2.0, 16384)
    >>> round(zero_shot_config(_smollm2_like(), "ntk").rope_parameters["rope_theta"])  # 1e5 * 2^(64/62)
    204522
    """
    if method not in ZERO_SHOT:
        raise ValueError(f"method={method!r} is unknown; choose one of {', '.join(ZERO_SHOT)}")
    if ZERO_SHOT[method] is None:
        return copy.deepcopy(config)
    return rope.extend_config(config, target_length, method=ZERO_SHOT[method])


def load_model(folder: str | Path, method: str = "extrapolation", target_length: int = TARGET_LENGTH,
               attn_implementation: str = "sdpa"):
    """The fetched SmolLM2 (``real_model.smollm2_dir()``) with ``method``'s RoPE, fp32, eval mode.

    ``attn_implementation="s2_attn"`` (after ``s2attn.register()``) gives S2-Attn in train mode.
    """
    from transformers import AutoConfig, LlamaForCausalLM

    config = zero_shot_config(AutoConfig.from_pretrained(folder), method, target_length)
    model = LlamaForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32,
                                             attn_implementation=attn_implementation)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# texts


def text_of(name: str) -> str:
    """The raw text of ``"python"`` (``_pydecimal.py``; else the stdlib's large files) or ``"prose"``."""
    if name == "python":
        path = Path(sysconfig.get_paths()["stdlib"]) / "_pydecimal.py"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        from .data import stdlib_documents

        return "\n\n".join(stdlib_documents())
    if name == "prose":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[key] for key in sorted(topics))  # sorted: the same order everywhere
    raise ValueError(f"text={name!r} is unknown; choose one of {', '.join(TEXTS)}")


def text_tokens(name: str, tokenizer, n_tokens: int) -> torch.Tensor:
    """The first ``n_tokens`` tokens of text ``name``: (n_tokens,) int64."""
    ids = tokenizer(text_of(name), add_special_tokens=False)["input_ids"]
    if len(ids) < n_tokens:
        raise ValueError(f"text {name!r} has only {len(ids)} tokens; ask for n_tokens <= {len(ids)}")
    return torch.tensor(ids[:n_tokens], dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# perplexity by position


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@torch.no_grad()
def token_nll(model, ids: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``nll[t - 1] = -log p(ids[t] | ids[:t])`` for t = 1..L-1, from one forward over ids (L,): (L-1,).

    The model runs in the mode it is in (eval: full attention; train with S2-Attn: S2). The LM head
    runs ``chunk`` positions at a time: full logits at 16k would be 16k x 49k x 4 B = 3.2 GB.
    """
    causal = _base(model)
    device = next(causal.parameters()).device
    ids = ids.to(device)
    hidden = causal.model(input_ids=ids[None]).last_hidden_state[0, :-1]  # (L-1, d)
    out = []
    for c in range(0, hidden.shape[0], chunk):
        logits = causal.lm_head(hidden[c : c + chunk]).float()  # (n, V)
        out.append(F.cross_entropy(logits, ids[1 + c : 1 + c + chunk], reduction="none").cpu())
    return torch.cat(out)


def bucket_perplexity(nll: torch.Tensor, bucket: int = BUCKET) -> list[float]:
    """Perplexity of each position bucket [k·bucket, (k+1)·bucket) of predicted positions 1..L-1.

    >>> ppl = bucket_perplexity(torch.tensor([0.0, 0.0, 0.0, math.log(4.0)]), bucket=2)  # positions 1 | 2, 3 | 4
    >>> [round(p, 3) for p in ppl]
    [1.0, 1.0, 4.0]
    """
    positions = torch.arange(1, len(nll) + 1)  # the position of the predicted token
    return [math.exp(nll[(positions // bucket) == k].mean().item()) for k in range(int(positions[-1]) // bucket + 1)]


def perplexity_by_position(model, ids: torch.Tensor, bucket: int = BUCKET) -> dict:
    """``{"buckets": [start, ...], "perplexity": [...], "overall": PPL of all tokens}`` of one forward."""
    nll = token_nll(model, ids)
    ppl = bucket_perplexity(nll, bucket)
    return {"length": len(ids), "buckets": [k * bucket for k in range(len(ppl))], "perplexity": ppl,
            "overall": math.exp(nll.mean().item())}


# ---------------------------------------------------------------------------------------------
# passkey


@torch.no_grad()
def passkey_trial(model, tokenizer, length: int, depth: float, seed: int = 0, new_tokens: int = 8) -> dict:
    """One passkey prompt of ``length - new_tokens`` tokens (prompt + answer fit in ``length``), answered
    greedily with a KV cache; ``{"key", "answer", "correct"}``."""
    from .data import passkey_prompt, score_passkey

    prompt = passkey_prompt(tokenizer, length - new_tokens, depth, seed=seed)
    causal = _base(model)
    ids = torch.tensor([prompt.input_ids], device=next(causal.parameters()).device)  # (1, L)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = causal.generate(ids, max_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=pad)
    text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return {"key": prompt.key, "answer": text, "correct": bool(score_passkey(text, prompt.key))}


def passkey_cell(model, tokenizer, length: int, depths=(0.1, 0.5, 0.9), seed: int = 0) -> dict:
    """Passkey at one length over ``depths`` (one prompt each, its own key): trials and the count correct."""
    trials = [{"depth": d, **passkey_trial(model, tokenizer, length, d, seed=seed + i)} for i, d in enumerate(depths)]
    return {"trials": trials, "correct": sum(t["correct"] for t in trials), "total": len(trials)}


# ---------------------------------------------------------------------------------------------
# S2-Attn on the real model: step 0 and a short LoRA+ run

ATTENTION_MODES = ("full", "s2", "pattern1")  # eval full attention; train-mode S2; train-mode no-shift groups


def set_attention_mode(model, mode: str) -> None:
    """``"full"``: eval mode (S2 falls back to full attention); ``"s2"`` / ``"pattern1"``: train mode with
    that pattern (Llama has no dropout at attention_dropout=0, so train mode changes only attention)."""
    if mode not in ATTENTION_MODES:
        raise ValueError(f"mode={mode!r} is unknown; choose one of {', '.join(ATTENTION_MODES)}")
    causal = _base(model)
    causal.config.attention_pattern = "s2" if mode == "full" else mode
    causal.train(mode != "full")


def attention_mode_perplexity(model, windows: torch.Tensor, modes=ATTENTION_MODES) -> dict[str, float]:
    """Perplexity over ``windows`` (N, L) under each attention mode, every token scored once per window."""
    out = {}
    for mode in modes:
        set_attention_mode(model, mode)
        nll = torch.cat([token_nll(model, w) for w in windows])
        out[mode] = math.exp(nll.mean().item())
    set_attention_mode(model, "full")
    return out


def load_s2_model(folder: str | Path, group_size_ratio: float = 0.25):
    """SmolLM2 with ``attn_implementation="s2_attn"``: S2-Attn in train mode, full attention in eval."""
    from .s2attn import register

    register()
    model = load_model(folder, "extrapolation", attn_implementation="s2_attn")
    model.config.group_size_ratio = group_size_ratio
    return model


def s2_finetune(model, train_ids: torch.Tensor, eval_windows: torch.Tensor, length: int, steps: int,
                lr: float = 1e-4, eval_every: int = 5, seed: int = 0, log=print, on_record=None) -> list[dict]:
    """LoRA+ with S2-Attn for ``steps`` steps on random ``length``-token windows of ``train_ids``,
    measuring full-attention and S2 perplexity on ``eval_windows`` at step 0 and every ``eval_every``.

    Returns the history ``[{"step", "train_loss", "full", "s2"}, ...]``. ``model`` comes from
    :func:`load_s2_model`; it is wrapped with LoRA+ in place. ``on_record(history)`` is called after
    every measurement (the report saves the curve so far: a killed run keeps it).
    """
    import time

    from . import lora

    model = lora.apply(model, "lora+")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0, foreach=False)
    generator = torch.Generator().manual_seed(seed)
    history, loss_value, start = [], float("nan"), time.perf_counter()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            ppl = attention_mode_perplexity(model, eval_windows, ("full", "s2"))
            history.append({"step": step, "train_loss": loss_value, **ppl, "seconds": time.perf_counter() - start})
            if on_record is not None:
                on_record(history)
            log(f"step {step}: train loss {loss_value:.3f}, full PPL {ppl['full']:.3f}, S2 PPL {ppl['s2']:.3f}")
        if step == steps:
            break
        begin = int(torch.randint(0, len(train_ids) - length, (1,), generator=generator))
        x = train_ids[begin : begin + length][None]  # (1, L)
        set_attention_mode(model, "s2")
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
    set_attention_mode(model, "full")
    return history


def notebook_settings(profile: str | None = None) -> dict:
    """Sizes of notebook 07's live measurements (``budgets.NOTEBOOK_07``, by profile).

    >>> notebook_settings("smoke")["ppl_length"], notebook_settings("workshop")["document_tokens"]
    (256, 6000)
    """
    from .budgets import NOTEBOOK_07, at

    return at(NOTEBOOK_07, profile)

