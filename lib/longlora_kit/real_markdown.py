"""``docs/real_model.md`` from the results JSON of :mod:`longlora_kit.real_report` (no computing here).

>>> print(render({"profile": "smoke", "cells": {}}, ["ppl/python/pi/256"]).splitlines()[0])
# SmolLM2-135M-Instruct: zero-shot context extension, passkey, S2-Attn (profile smoke)
"""

from __future__ import annotations

import math

METHOD_NAMES = {"extrapolation": "extrapolation (RoPE as trained)", "pi": "linear PI x2", "ntk": "NTK-aware x2",
                "dynamic": "dynamic NTK x2", "yarn": "YaRN x2",
                "longlora": "LongLoRA (PI x2 + S2-Attn + LoRA+, trained)"}


def _tokens(n: int) -> str:
    """4096 -> '4k', 384 -> '384'."""
    return f"{n // 1024}k" if n % 1024 == 0 and n else str(n)


def _by_method_then_length(keys) -> list[str]:
    """Cell keys ending in ``method/length``, in ``METHOD_NAMES`` order, then by length.

    >>> _by_method_then_length(["passkey/yarn/2048", "passkey/pi/16384", "passkey/pi/2048"])
    ['passkey/pi/2048', 'passkey/pi/16384', 'passkey/yarn/2048']
    """
    order = list(METHOD_NAMES)
    return sorted(keys, key=lambda k: (order.index(k.split("/")[-2]), int(k.split("/")[-1])))


def _ppl_table(cells: dict, text: str) -> list[str]:
    rows = {k: cells[k] for k in _by_method_then_length(k for k in cells if k.startswith(f"ppl/{text}/"))}
    if not rows:
        return []
    longest = max(len(v["perplexity"]) for v in rows.values())
    bucket = max(v["buckets"][1] if len(v["buckets"]) > 1 else int(k.split("/")[-1]) for k, v in rows.items())
    heads = [f"{_tokens(b * bucket)}-{_tokens((b + 1) * bucket)}" for b in range(longest)]
    lines = [f"### Perplexity by position: {text}", "",
             "| method | tokens | " + " | ".join(heads) + " | all | seconds |", "|---|---|" + "---|" * (longest + 2)]
    for key, v in rows.items():
        _, _, method, length = key.split("/")
        cells_ = [f"{p:.2f}" for p in v["perplexity"]] + ["–"] * (longest - len(v["perplexity"]))
        lines.append(f"| {METHOD_NAMES.get(method, method)} | {length} | " + " | ".join(cells_)
                     + f" | {v['overall']:.2f} | {v['seconds']:.0f} |")
    return lines + [""]


def _passkey_table(cells: dict) -> list[str]:
    rows = {k: cells[k] for k in _by_method_then_length(k for k in cells if k.startswith("passkey/"))}
    if not rows:
        return []
    lines = ["### Passkey (greedy, KV cache; one prompt per depth)", "",
             "| method | length | correct | depths | answers | seconds |", "|---|---|---|---|---|---|"]
    for key, v in rows.items():
        _, method, length = key.split("/")
        answers = ", ".join(f"{t['key']}->{t['answer'].strip()!r}" for t in v["trials"])
        depths = ", ".join(str(t["depth"]) for t in v["trials"])
        lines.append(f"| {METHOD_NAMES.get(method, method)} | {length} | {v['correct']}/{v['total']} | {depths} | "
                     f"{answers} | {v['seconds']:.0f} |")
    return lines + [""]


def _s2_tables(cells: dict) -> list[str]:
    lines = []
    for key, v in cells.items():
        if key.startswith("s2_step0/"):
            p = v["perplexity"]
            lines += [f"### S2-Attn at step 0 ({key.split('/')[1]} tokens, {v['windows']} windows of _pydecimal.py)", "",
                      "| full attention | S2-Attn (train mode) | no-shift short attention (pattern 1) |", "|---|---|---|",
                      f"| {p['full']:.2f} | {p['s2']:.2f} | {p['pattern1']:.2f} |", ""]
        if key.startswith("s2_train/"):
            lines += [f"### LoRA+ with S2-Attn, {v['steps']} steps at {key.split('/')[1]} tokens (lr {v['lr']})", "",
                      "| step | train loss (S2) | full-attention PPL | S2 PPL | seconds |", "|---|---|---|---|---|"]
            lines += [f"| {h['step']} | {_loss(h['train_loss'])} | {h['full']:.2f} | {h['s2']:.2f} | {h['seconds']:.0f} |"
                      for h in v["history"]]  # step 0 is before any training step: no loss yet
            lines.append("")
    return lines


def won_back(base: float, zero_shot: float, trained: float) -> float:
    """The share of a zero-shot method's loss that training recovers, in log-perplexity (nats per token):
    ``(log zero_shot - log trained) / (log zero_shot - log base)``; 1 = back to the base model.

    >>> round(won_back(8.0, 27.8, 8.0), 3), round(won_back(8.0, 27.8, 27.8), 3)
    (1.0, 0.0)
    """
    return (math.log(zero_shot) - math.log(trained)) / (math.log(zero_shot) - math.log(base))


def _extension_tables(cells: dict) -> list[str]:
    key = next((k for k in cells if k.startswith("extension/")), None)
    if key is None:
        return []
    record, length = cells[key], int(key.split("/")[1])
    c, losses = record["settings"], record["losses"]
    lines = [f"### The LongLoRA extension: 8k -> {c['seq_len'] // 1024}k", "",
             f"`longlora-kit extend` run `{record['run']}`: {c['rope_method']} RoPE to {c['target_length']}, "
             f"{c['attention']} attention (group {c['group_size_ratio']} x L), {c['method']} (r={c['lora_r']}), "
             f"lr {c['lr']} ({c['warmup_steps']} warm-up step{'' if c['warmup_steps'] == 1 else 's'}, then constant), {c['max_steps']} steps of "
             f"{c['batch_size'] * c['grad_accum']} x {c['seq_len']} tokens of `{c['data']}` text "
             f"(`_pydecimal.py` held out), gradient checkpointing {'on' if c['gradient_checkpointing'] else 'off'}.",
             "", "| steps | tokens | training time | tokens/s | peak memory (one step) | trainable / total | "
             "loss first -> last |", "|---|---|---|---|---|---|---|",
             f"| {len(losses)} | {record['tokens']} | {record['train_seconds'] / 60:.0f} min | "
             f"{record['tokens_per_second']:.0f} | {_mb(record['peak_memory_mb'])} | "
             f"{record['trainable_parameters'] / 1e6:.1f} M / {record['total_parameters'] / 1e6:.1f} M | "
             f"{losses[0]:.3f} -> {losses[-1]:.3f} |", ""]
    for text in ("python", "prose"):
        rows = {m: cells.get(f"ppl/{text}/{m}/{length}") for m in ("extrapolation", "pi", "yarn", "longlora")}
        if any(v is None for v in rows.values()):
            continue
        n = len(rows["longlora"]["perplexity"])
        heads = [f"{_tokens(b)}-{_tokens(b + rows['longlora']['buckets'][1])}" for b in rows["longlora"]["buckets"]]
        lines += [f"How much of linear PI's zero-shot loss does LongLoRA win back ({text})? Share of the gap in "
                  "log-perplexity between PI zero-shot and the base model, in the buckets the base model was "
                  "trained on (`won_back`); past 8k the base model has no reference, so compare with YaRN.", "",
                  "| | " + " | ".join(heads) + " |", "|---|" + "---|" * n]
        for m in ("extrapolation", "pi", "yarn", "longlora"):
            lines.append(f"| {METHOD_NAMES[m]} | " + " | ".join(f"{p:.2f}" for p in rows[m]["perplexity"]) + " |")
        shares = [won_back(b, z, t) for b, z, t in zip(*(rows[m]["perplexity"] for m in ("extrapolation", "pi", "longlora")))]
        within = [b < 8192 for b in rows["longlora"]["buckets"]]
        lines += ["| LongLoRA: share of PI's loss won back | "
                  + " | ".join(f"{x:.0%}" if ok else "–" for x, ok in zip(shares, within)) + " |", ""]
    return lines


def _mb(value) -> str:
    return "–" if value is None else f"{value / 1024:.1f} GB"


def _loss(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"  # NaN: no step taken yet


def render(results: dict, planned: list[str]) -> str:
    """The markdown report: machine, one table per measurement, and the cells not computed yet."""
    cells = results.get("cells", {})
    m = results.get("machine", {})
    lines = [f"# SmolLM2-135M-Instruct: zero-shot context extension, passkey, S2-Attn (profile {results.get('profile')})",
             "", "Generated by `longlora-kit real-eval` from `real_model.json` beside this file; do not edit by hand.",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpu threads', '?')} threads, torch {m.get('torch', '?')}, "
             f"transformers {m.get('transformers', '?')}. fp32, SDPA. Seconds are wall time on a shared machine "
             "(each cell records the load average when it started and the process's peak RSS so far).", "",
             "Texts: `python` = the standard library's `_pydecimal.py`; `prose` = the Python reference manual's "
             "English (`pydoc_data.topics`). Zero-shot = the same weights, RoPE stretched 8k -> 16k "
             "(`rope.extend_config`), no training.", ""]
    for text in ("python", "prose"):
        lines += _ppl_table(cells, text)
    lines += _passkey_table(cells) + _s2_tables(cells) + _extension_tables(cells)
    missing = [k for k in planned if k not in cells]
    if missing:
        command = f"longlora-kit real-eval --profile {results.get('profile')} --out {results.get('out', 'PATH')}"
        lines += ["### Not computed yet", "", f"`{command}` computes them (finished cells are kept; "
                  "`--only PREFIX` picks some, e.g. `--only ppl/python/yarn/16384`):", ""]
        lines += [f"- `{k}`" for k in missing] + [""]
        for key, v in results.get("partial", {}).items():  # a training run stopped part-way: its curve so far
            lines += [f"Partial `{key}` (stopped): " + "; ".join(
                f"step {h['step']}: full {h['full']:.2f}, S2 {h['s2']:.2f}" for h in v["history"]), ""]
    return "\n".join(lines)
