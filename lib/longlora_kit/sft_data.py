"""Instruction data for long-instruction fine-tuning (SFT): read it, check it, or generate it offline.

Every example becomes one conversation, a tuple of messages ending with the answer to learn:

    LongAlpaca JSON   {"instruction": "...", "input": "...", "output": "..."}
                      -> user: instruction (+ blank line + input), assistant: output
    chat JSONL        {"messages": [{"role": "user", "content": "..."}, ..., {"role": "assistant", ...}]}

LongAlpaca-12k (the paper's SFT set: 9k long QA over papers and books + 3k short Alpaca QA) is a JSON
list of the first kind; :func:`load_examples` reads it from a ``.json`` / ``.jsonl`` file or a folder
written by ``datasets.Dataset.save_to_disk``. A record that cannot be trained on (a missing field, an
empty answer, a conversation that does not end with the assistant) is skipped and *counted* by reason,
or raises when ``on_bad="error"``:

>>> examples, skipped = parse_records([{"instruction": "Say hi.", "output": "hi"},
...                                     {"instruction": "Say hi.", "output": " "}])
>>> examples[0].messages[-1], dict(skipped)
({'role': 'assistant', 'content': 'hi'}, {'empty output': 1})

**Offline data.** :func:`document_question` writes a long document of the kit's filler sentences with
one record hidden at a chosen depth, and asks for it; :func:`short_instruction` writes a short task
(no long context needed); :func:`instruction_mix` mixes them in a chosen ratio (LongAlpaca: 3/4 long):

>>> qa = document_question(length=64, depth=0.5, seed=0)
>>> qa.question, qa.answer, 56 <= approx_tokens(qa.document) <= 64
('What is the fern key?', 'The fern key is 60473.', True)

The answer is a sentence in the corpus's own words (``What is the fern key? The fern key is 60473.``),
so a model pre-trained on that corpus can answer with the copy it already learned; what SFT adds is
answering after the prompt format, about a fact anywhere in a long document.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .data import FILLER_FACTS, RECORD_NAMES, approx_tokens, filler_sentence, random_key, record_sentence

ROLES = ("system", "user", "assistant")
LONG_QA_FIELDS = ("instruction", "output")  # required; "input" is optional


@dataclass(frozen=True)
class Example:
    """One conversation to train on: ``messages`` end with the assistant's answer (the only part with loss)."""

    messages: tuple[dict, ...]
    kind: str = "data"  # "long" / "short" for generated examples (to count the mix), else "data"


class BadExample(ValueError):
    """A record the SFT cannot train on; ``reason`` is the short name it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# Reading and checking records


def parse_record(record) -> Example:
    """One LongAlpaca or chat record as an :class:`Example`, or :class:`BadExample` saying what is wrong.

    >>> parse_record({"instruction": "Add 2 and 3.", "input": "", "output": "5"}).messages
    ({'role': 'user', 'content': 'Add 2 and 3.'}, {'role': 'assistant', 'content': '5'})
    >>> parse_record({"instruction": "Add 2 and 3."})
    Traceback (most recent call last):
    longlora_kit.sft_data.BadExample: missing field 'output': a LongAlpaca record needs 'instruction' and 'output' ('input' optional); keys: ['instruction']
    """
    if not isinstance(record, dict):
        raise BadExample("not an object", f"each record must be a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise BadExample("bad messages", "'messages' must be a non-empty list of {role, content}")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise BadExample("bad messages", f"each message needs a role in {ROLES} and string content, got {m!r}"[:200])
        if messages[-1]["role"] != "assistant":
            raise BadExample("no answer", "the last message must be the assistant's answer (the part trained on)")
        if not messages[-1]["content"].strip():
            raise BadExample("empty output", "the assistant's answer is empty")
        return Example(tuple(dict(role=m["role"], content=m["content"]) for m in messages))
    for name in LONG_QA_FIELDS:
        if name not in record or record[name] is None:
            raise BadExample(f"missing field {name!r}", "a LongAlpaca record needs 'instruction' and 'output' "
                             f"('input' optional); keys: {sorted(record)}")
        if not isinstance(record[name], str):
            raise BadExample(f"bad field {name!r}", f"must be a string, got {type(record[name]).__name__}")
    if not record["output"].strip():
        raise BadExample("empty output", "the 'output' (the answer trained on) is empty")
    if not record["instruction"].strip():
        raise BadExample("empty instruction", "the 'instruction' is empty")
    extra = (record.get("input") or "").strip()
    user = record["instruction"].strip() + (f"\n\n{extra}" if extra else "")
    return Example(({"role": "user", "content": user}, {"role": "assistant", "content": record["output"].strip()}))


def parse_records(records, on_bad: str = "skip") -> tuple[list[Example], Counter]:
    """Parse ``records``; bad ones are counted by reason (``on_bad="skip"``) or raise (``"error"``)."""
    if on_bad not in ("skip", "error"):
        raise ValueError(f"on_bad={on_bad!r} must be 'skip' (count and report) or 'error' (stop at the first)")
    examples, skipped = [], Counter()
    for i, record in enumerate(records):
        try:
            examples.append(parse_record(record))
        except BadExample as err:
            if on_bad == "error":
                raise BadExample(err.reason, f"record {i}: {err}; fix the record or pass on_bad='skip'") from None
            skipped[err.reason] += 1
    return examples, skipped


def read_records(path: str | Path) -> list:
    """The raw records of a ``.json`` list, a ``.jsonl`` file or a ``datasets.save_to_disk`` folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
            raise ValueError(f"instructions={str(path)!r} is a folder but not a datasets.save_to_disk folder; "
                             "pass a .json / .jsonl file or a save_to_disk folder")
        from datasets import DatasetDict, load_from_disk

        dataset = load_from_disk(str(path))
        if isinstance(dataset, DatasetDict):  # LongAlpaca-12k has one split, "train"
            dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        return list(dataset)
    if not path.is_file():
        raise ValueError(f"instructions={str(path)!r} does not exist; pass a LongAlpaca .json, a chat .jsonl, "
                         "a save_to_disk folder, or 'longqa' for the kit's generated long-document QA")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"instructions={str(path)!r} is not valid JSON ({err}); LongAlpaca is one JSON list, "
                         "chat data one JSON object per line in a .jsonl file") from None
    if not isinstance(records, list):
        raise ValueError(f"instructions={str(path)!r} holds a JSON {type(records).__name__}, not a list of records")
    return records


def load_examples(path: str | Path, on_bad: str = "skip") -> tuple[list[Example], Counter]:
    """Read and check the instruction file or folder at ``path``: ``(examples, skipped counts)``."""
    return parse_records(read_records(path), on_bad)


# --------------------------------------------------------------------------------------------------
# Generated data: long-document QA and short instructions


@dataclass(frozen=True)
class DocumentQuestion:
    """A long document, a question about one fact in it, the answer (a sentence) and the ``key`` it
    names; ``depth`` = where the fact sits (0 = start, 1 = end), ``length`` = approximate tokens."""

    document: str
    question: str
    answer: str
    key: str
    depth: float
    length: int

    def example(self) -> Example:
        # document first, then the question: the layout chat.build_prompt uses at inference
        user = f"{self.document}\n\n{self.question}"
        return Example(({"role": "user", "content": user}, {"role": "assistant", "content": self.answer}), "long")


def document_question(length: int, depth: float, seed: int = 0) -> DocumentQuestion:
    """Filler sentences of about ``length`` tokens (kit tokenizer) with ``The <name> key is K. ...`` at
    ``depth``; the question asks for that key. Same words as the pre-training corpus and passkey test."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must lie in [0, 1] (0 = start of the document, 1 = its end), got {depth}")
    rng = random.Random(seed)
    name, key = rng.choice(RECORD_NAMES), random_key(rng)
    fact = record_sentence(name, key)
    budget = length - approx_tokens(fact)
    if budget < 0:
        raise ValueError(f"length={length} is too short for a document with a fact; use at least {approx_tokens(fact)}")
    filler, used = [], 0
    while True:
        sentence = filler_sentence(rng)
        if used + approx_tokens(sentence) > budget:
            break
        filler.append(sentence)
        used += approx_tokens(sentence)
    at = round(depth * len(filler))  # a sentence boundary near the requested depth
    document = " ".join(filler[:at] + [fact] + filler[at:])
    return DocumentQuestion(document, f"What is the {name} key?", f"The {name} key is {key}.", key, depth, length)


def short_instruction(seed: int = 0) -> Example:
    """A short task that needs no long context (the Alpaca share of LongAlpaca): a property of a noun,
    repeating a number, or a record a sentence before its question.

    >>> [m["content"] for m in short_instruction(seed=1).messages]
    ['Describe the fire in one word.', 'hot']
    """
    rng = random.Random(seed)
    kind = rng.randrange(3)
    if kind == 0:
        noun = rng.choice(sorted(FILLER_FACTS))
        user, answer = f"Describe the {noun} in one word.", FILLER_FACTS[noun]
    elif kind == 1:
        key = random_key(rng)
        user, answer = f"Repeat this number: {key}.", key
    else:
        name, key = rng.choice(RECORD_NAMES), random_key(rng)
        user, answer = f"{record_sentence(name, key)}\n\nWhat is the {name} key?", f"The {name} key is {key}."
    return Example(({"role": "user", "content": user}, {"role": "assistant", "content": answer}), "short")


def instruction_mix(n_examples: int, long_fraction: float, lengths: tuple[int, int], seed: int = 0) -> list[Example]:
    """``n_examples`` examples, ``round(long_fraction * n)`` of them long-document QA (document length
    uniform in ``lengths``, depth uniform in [0, 1]), the rest short; shuffled, seeded.

    >>> mix = instruction_mix(8, 0.75, (32, 64), seed=0)
    >>> sorted(Counter(e.kind for e in mix).items())
    [('long', 6), ('short', 2)]
    """
    if not 0.0 <= long_fraction <= 1.0:
        raise ValueError(f"long_fraction must lie in [0, 1] (LongAlpaca-12k: 0.75), got {long_fraction}")
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1, got {n_examples}")
    rng = random.Random(seed)
    n_long = round(long_fraction * n_examples)
    out = [document_question(rng.randint(*lengths), rng.random(), seed=rng.randrange(2**31)).example()
           for _ in range(n_long)]
    out += [short_instruction(seed=rng.randrange(2**31)) for _ in range(n_examples - n_long)]
    rng.shuffle(out)
    return out


__all__ = ["BadExample", "DocumentQuestion", "Example", "document_question", "instruction_mix", "load_examples",
           "parse_record", "parse_records", "read_records", "short_instruction"]
