"""Does SFT teach a model to answer questions about a long document? Exact match by length x depth.

:func:`accuracy_grid` asks held-out questions (:func:`~longlora_kit.sft_data.document_question`, seeds
from 1,000,000 on, so no training document or key is reused) about documents of each length with the
fact at each depth, through ``chat.answer`` (the model's chat template, greedy, full attention in eval
mode), and scores each answer by :func:`exact_match`. :func:`mix_effect` measures LongLoRA issue #31:
SFT on short instructions only vs the long + short mix, both from one base, long-document accuracy
before and after, written as JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HELD_OUT_SEED = 1_000_000


def exact_match(generated: str, answer: str) -> bool:
    """The reply starts with the exact answer as a whole word (what follows it is ignored: a tiny model
    may not stop).

    >>> exact_match("48215", "48215"), exact_match(" 48215. The", "48215"), exact_match("482153", "48215")
    (True, True, False)
    >>> exact_match("The pass key is 48215. The", "The pass key is 48215.")
    True
    >>> exact_match("48215", "The pass key is 48215.")  # the answer's form is part of what SFT teaches
    False
    """
    answer = answer.strip()
    boundary = r"(\W|$)" if answer[-1:].isalnum() else ""  # "48215" must not go on; "...48215." ends itself
    return re.match(re.escape(answer) + boundary, generated.strip()) is not None


def grid_settings(seq_len: int, profile: str | None = None) -> dict:
    """Document lengths (up to the context, leaving room for prompt + answer), depths and trials per cell."""
    from .profile import pick

    room = seq_len - 48
    return pick({
        "smoke": dict(lengths=[seq_len // 4, room], depths=[0.0, 1.0], trials=2),
        "workshop": dict(lengths=[seq_len // 4, seq_len // 2, room], depths=[0.0, 0.25, 0.5, 0.75, 1.0], trials=4),
        "full": dict(lengths=[seq_len // 8, seq_len // 4, seq_len // 2, room], depths=[0.0, 0.25, 0.5, 0.75, 1.0],
                     trials=10),
    }, profile)


def accuracy_grid(model, tokenizer, lengths, depths, trials: int = 4, seed: int = HELD_OUT_SEED,
                  progress: bool = False) -> dict:
    """Exact-match accuracy ``[depth][length]`` on held-out document questions (JSON-ready), with every answer.

    ``key_accuracy``: the first number in the reply is the key (the passkey test's score): retrieval
    alone, forgiving a wrong name or form around it."""
    from tqdm.auto import tqdm

    from .chat import answer
    from .data import score_passkey
    from .sft import with_chat_template
    from .sft_data import document_question

    tokenizer = with_chat_template(tokenizer)
    accuracy, key_accuracy, answers = [], [], []
    bar = tqdm(total=len(depths) * len(lengths) * trials, desc="questions", disable=not progress)
    for d, depth in enumerate(depths):
        row, key_row = [], []
        for n, length in enumerate(lengths):
            hits = key_hits = 0
            for t in range(trials):
                qa = document_question(length, depth, seed=seed + (d * len(lengths) + n) * trials + t)
                reply = answer(model, tokenizer, qa.question, document=qa.document,
                               max_new_tokens=len(tokenizer(" " + qa.answer, add_special_tokens=False)["input_ids"]) + 2)
                hits += exact_match(reply, qa.answer)
                key_hits += score_passkey(reply, qa.key)
                answers.append({"length": length, "depth": depth, "answer": qa.answer, "reply": reply})
                bar.update()
            row.append(hits / trials)
            key_row.append(key_hits / trials)
        accuracy.append(row)
        key_accuracy.append(key_row)
    bar.close()
    cells = len(depths) * len(lengths)
    return {"lengths": list(lengths), "depths": list(depths), "trials": trials, "accuracy": accuracy,
            "mean": sum(map(sum, accuracy)) / cells, "key_accuracy": key_accuracy,
            "key_mean": sum(map(sum, key_accuracy)) / cells, "answers": answers}


def mix_effect(base_model: str, out_dir: str, fractions=(0.0, 0.75), profile: str | None = None,
               grid: dict | None = None, **overrides) -> dict:
    """SFT ``base_model`` once per long fraction (0 = short instructions only); accuracy grids before and
    after each (``grid``: lengths, depths, trials; what it leaves out comes from :func:`grid_settings`),
    written to ``out_dir/sft_mix.json`` (atomically) and returned."""
    from .chat import load_chat_model
    from .runs import write_text
    from .sft import sft_config, train_sft

    config = sft_config(base_model, str(Path(out_dir) / "unused"), profile=profile, **overrides)
    grid = {**grid_settings(config.seq_len, profile), **(grid or {})}
    progress = config.progress
    model, tokenizer = load_chat_model(base_model)
    before = accuracy_grid(model, tokenizer, **grid, progress=progress)
    record = {"base_model": str(base_model), "grid": grid, "before": before, "after": {}}
    for fraction in fractions:
        run = sft_config(base_model, str(Path(out_dir) / f"long{fraction:g}"), profile=profile,
                         long_fraction=fraction, **overrides)
        result, report = train_sft(run)
        after = accuracy_grid(result.model, result.tokenizer, **grid, progress=progress)
        record["after"][f"{fraction:g}"] = {**after, "report": report, "seconds": result.seconds,
                                            "final_loss": result.losses[-1]}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(out_dir) / "sft_mix.json", json.dumps(record, indent=1) + "\n")
    return record


__all__ = ["HELD_OUT_SEED", "accuracy_grid", "exact_match", "grid_settings", "mix_effect"]
