"""The kit's data: a synthetic long-range corpus, real text, passkey prompts, a BPE tokenizer, packing.

Everything here is offline and deterministic (seeded), so a notebook starts in seconds.

**Why a synthetic corpus?** Extending a context window only pays off on text whose later tokens
depend on tokens far earlier. Natural text has such dependencies, but a tiny model trained for
minutes cannot find them. So the kit writes documents where they are planted at controlled
distances. A document is a stream of sentences of four kinds:

    filler    "The grass is green."                                (a noun drawn at random, its fixed colour)
    record    "The maple key is 48215. Remember it. 48215 is the maple key."   (a fresh random key)
    echo      "Again, 48215."                                      (two of them, a few sentences later)
    question  "What is the maple key? The maple key is 48215."     (repeated until the record is dropped)

After a record and its echoes, the key is asked about again and again, each question ``d`` tokens
after the previous mention, with ``d`` drawn log-uniformly from ``[min_distance, max_distance]``;
after each question the record is dropped with probability ``drop_rate`` and a new one may start.
One record is open at a time, so every answer is a copy of the most recent number: the simplest
retrieval there is (an induction head). The five digits of an answer are unguessable (about
ln 9 nats each) unless the previous mention is still inside the model's context, so the loss on them
measures how far back the model looks.

Two choices make that retrieval learnable by a 4-layer model in minutes (measured, issue #6): the
*echoes* a few sentences after each record (short, variable-distance copies, which the model learns
first; without them it stayed at chance for all 700 steps tried), and *keys with five different
digits*, so each digit tells which one comes next (with repeated digits, "the digit after the 4" is
ambiguous and the copy stalls after the first digit).

The passkey test of Position Interpolation (Chen et al., 2023) is a single record hidden in filler,
in those words: ``passkey_prompt`` writes one (name ``pass``), and the answer is scored by exact
match of the greedy continuation.

**Real text** comes from the local Python standard library (long files with long-range structure:
imports used far below, names defined once and used later); present on every machine, selected
deterministically, but its exact content differs between Python versions.

**Tokenizer.** A byte-level BPE (Hugging Face ``tokenizers``, Llama-style single digits) trained on
both by :func:`build_tokenizer` (``longlora-kit tokenizer``); it ships inside the package
(``longlora_kit/assets/tokenizer/``, see :mod:`longlora_kit.tokenizer`).

>>> doc = synthetic_documents(1, seed=0)[0]
>>> doc.split(". ")[:3]
['The stone is hard', 'The marble key is 64728', 'Remember it']
"""

from __future__ import annotations

import bisect
import math
import random
import re
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# The tokenizer is its own module; data re-exports it because "data.load_tokenizer()" is how it is read.
from .tokenizer import (  # noqa: F401
    DEFAULT_TOKENIZER_DIR,
    EOS_TOKEN,
    TOKENIZER_VOCAB_SIZE,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

# --------------------------------------------------------------------------------------------------
# The synthetic long-range corpus
# --------------------------------------------------------------------------------------------------

# Filler: each noun always has the same property, so a filler sentence costs only the noun choice.
FILLER_FACTS = {
    "grass": "green", "sky": "blue", "sun": "yellow", "snow": "white", "night": "dark",
    "river": "wide", "stone": "hard", "fire": "hot", "ice": "cold", "wind": "fast",
    "hill": "steep", "road": "long", "sea": "deep", "cloud": "grey", "bread": "warm", "moon": "round",
}
# Record names; "pass" is one of them so the passkey test is in-distribution.
RECORD_NAMES = (
    "pass", "maple", "cedar", "amber", "falcon", "garnet", "harbor", "iris", "jasper", "lotus",
    "nickel", "onyx", "pepper", "quartz", "raven", "saffron", "tulip", "violet", "willow", "zephyr",
    "birch", "coral", "dune", "ember", "fern", "glacier", "hazel", "indigo", "juniper", "kestrel",
    "lemon", "marble",
)


@dataclass(frozen=True)
class SyntheticSpec:
    """How the synthetic corpus is generated (all distances in approximate tokens)."""

    tokens_per_document: int = 2048  # document length
    min_distance: int = 8            # shortest gap between two mentions of a key
    max_distance: int = 1024         # longest gap (4x a 256-token context)
    record_rate: float = 0.5         # chance that a sentence opens a new record (when none is open)
    echoes: int = 2                  # "Again, K." sentences after each record, 0-2 filler sentences apart
    drop_rate: float = 0.25          # chance that a record is dropped after each question


def filler_sentence(rng: random.Random) -> str:
    noun = rng.choice(sorted(FILLER_FACTS))
    return f"The {noun} is {FILLER_FACTS[noun]}."


def random_key(rng: random.Random) -> str:
    """Five different digits, not starting with 0 (27,216 possible keys).

    >>> random_key(random.Random(0))
    '69024'
    """
    while True:
        digits = rng.sample("0123456789", 5)
        if digits[0] != "0":
            return "".join(digits)


def record_sentence(name: str, value: str) -> str:
    """A record in the words of the Position Interpolation paper's passkey test."""
    return f"The {name} key is {value}. Remember it. {value} is the {name} key."


def echo_sentence(value: str) -> str:
    return f"Again, {value}."


def query_sentence(name: str, value: str | None = None) -> str:
    """The question about a record; without ``value`` it ends where the answer starts (a prompt)."""
    prompt = f"What is the {name} key? The {name} key is"
    return prompt if value is None else f"{prompt} {value}."


def approx_tokens(text: str) -> int:
    """Token count of ``text`` under the kit's tokenizer, without needing it: words, punctuation,
    single digits, plus the space in front of a number (exact for the synthetic corpus)."""
    return len(re.findall(r"[A-Za-z]+|\d|[^\w\s]", text)) + len(re.findall(r" \d", text))


def synthetic_documents(n_documents: int, seed: int = 0, spec: SyntheticSpec | None = None,
                        tokens_per_document: int | None = None, max_distance: int | None = None) -> list[str]:
    """``n_documents`` documents of the long-range corpus (see the module docstring), seeded.
    ``tokens_per_document`` and ``max_distance`` override the fields of ``spec``.

    >>> a = synthetic_documents(3, seed=1, tokens_per_document=300)
    >>> a == synthetic_documents(3, seed=1, tokens_per_document=300)
    True
    >>> "key is" in a[0]
    True
    """
    spec = spec or SyntheticSpec()
    overrides = {k: v for k, v in (("tokens_per_document", tokens_per_document), ("max_distance", max_distance))
                 if v is not None}
    spec = SyntheticSpec(**{**asdict(spec), **overrides})
    if not 1 <= spec.min_distance <= spec.max_distance:
        raise ValueError(f"need 1 <= min_distance <= max_distance, got {spec.min_distance}, {spec.max_distance}")
    if not 0.0 < spec.drop_rate <= 1.0:
        raise ValueError(f"drop_rate must lie in (0, 1], got {spec.drop_rate}")
    rng = random.Random(seed)
    return [_one_document(rng, spec) for _ in range(n_documents)]


def _one_document(rng: random.Random, spec: SyntheticSpec) -> str:
    sentences: list[str] = []
    position = 0                  # approximate tokens written so far
    record = None                 # the open record: [name, key, position of its next question]
    echoes: list[int] = []        # filler sentences still to write before each pending echo
    log_lo, log_hi = math.log(spec.min_distance), math.log(spec.max_distance)

    def gap() -> int:
        return round(math.exp(rng.uniform(log_lo, log_hi)))

    while position < spec.tokens_per_document:
        if record and echoes and echoes[0] == 0:
            echoes.pop(0)
            sentence = echo_sentence(record[1])
            if not echoes:
                record[2] = position + gap()
        elif record and not echoes and record[2] <= position:
            sentence = query_sentence(record[0], record[1])
            record = None if rng.random() < spec.drop_rate else [record[0], record[1], position + gap()]
        elif record is None and rng.random() < spec.record_rate:
            record = [rng.choice(RECORD_NAMES), random_key(rng), position + gap()]
            echoes = [rng.randrange(3) for _ in range(spec.echoes)]
            sentence = record_sentence(record[0], record[1])
        else:
            sentence = filler_sentence(rng)
            if echoes:
                echoes[0] -= 1
        sentences.append(sentence)
        position += approx_tokens(" " + sentence)
    return " ".join(sentences)


def query_spans(document_ids: list[int], tokenizer) -> list[tuple[int, int]]:
    """``(answer_start, distance)`` for every mention of a key that was mentioned before in the same
    tokenized synthetic document (echoes and questions): ``answer_start`` is the token index of its
    first digit, ``distance`` the number of tokens back to the previous mention's first digit (the
    statistics, and where the answer-digit loss is read)."""
    text = tokenizer.decode(document_ids)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [start for start, _ in offsets]
    last_seen: dict[str, int] = {}
    spans = []
    for match in re.finditer(r"(?<!\d)\d{5}(?!\d)", text):
        at = bisect.bisect_right(starts, match.start()) - 1
        if match.group() in last_seen:
            spans.append((at, at - last_seen[match.group()]))
        last_seen[match.group()] = at
    return spans


def query_distances(document_ids: list[int], tokenizer) -> list[int]:
    """Token distances from each repeated key to its previous mention in one tokenized document."""
    return [distance for _, distance in query_spans(document_ids, tokenizer)]


def stream_answers(documents_ids: list[list[int]], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer digits of documents joined by :func:`join_documents`: (positions (M, 5), distances (M,))
    in the stream's coordinates, for reading the loss on answers only."""
    positions, distances, offset = [], [], 0
    for ids in documents_ids:
        for start, distance in query_spans(ids, tokenizer):
            positions.append([offset + start + i for i in range(5)])
            distances.append(distance)
        offset += len(ids) + 1  # + EOS
    return torch.tensor(positions, dtype=torch.long).view(-1, 5), torch.tensor(distances, dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# Real text: the local Python standard library
# --------------------------------------------------------------------------------------------------

#: Standard-library files the real model is evaluated on (``real_eval.text_of("python")``): training
#: sources leave them out, so a perplexity measured on them is never on text the model trained on.
EVALUATION_FILES = ("_pydecimal.py",)


def stdlib_documents(max_documents: int | None = None, min_chars: int = 20_000,
                     max_chars: int | None = None, exclude: tuple[str, ...] = ()) -> list[str]:
    """Source files of the local Python standard library as documents (top-level ``*.py``, sorted by
    name, those with at least ``min_chars`` characters, none named in ``exclude``). Deterministic on one
    Python installation; the content differs between Python versions, so nothing may rely on it exactly."""
    root = Path(sysconfig.get_paths()["stdlib"])
    documents, total = [], 0
    for path in sorted(root.glob("*.py")):
        if path.name in exclude:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) < min_chars:
            continue
        documents.append(text)
        total += len(text)
        if (max_documents is not None and len(documents) >= max_documents) or (
            max_chars is not None and total >= max_chars
        ):
            break
    if not documents:
        raise ValueError(f"found no standard-library files of at least min_chars={min_chars} in {root}")
    return documents


# --------------------------------------------------------------------------------------------------
# Passkey retrieval
# --------------------------------------------------------------------------------------------------

@dataclass
class PasskeyPrompt:
    input_ids: list[int]  # the prompt, exactly ``length`` tokens, ending where the answer starts
    key: str              # the 5-digit answer
    depth: float          # where the key sits, 0 = start of the filler, 1 = just before the question


def passkey_prompt(tokenizer, length: int, depth: float, seed: int = 0) -> PasskeyPrompt:
    """A passkey prompt of exactly ``length`` tokens: filler, ``The pass key is K. Remember it. K is the
    pass key.`` at ``depth`` of the filler, more filler, then ``What is the pass key? The pass key is``.

    >>> tok = load_tokenizer()
    >>> p = passkey_prompt(tok, 128, depth=0.5, seed=0)
    >>> len(p.input_ids), len(p.key)
    (128, 5)
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must lie in [0, 1] (0 = start, 1 = end of the filler), got {depth}")
    rng = random.Random(seed)
    key = random_key(rng)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    needle = encode(" " + record_sentence("pass", key))
    question = encode(" " + query_sentence("pass"))
    budget = length - len(needle) - len(question)
    if budget < 0:
        raise ValueError(f"length={length} is too short for a passkey prompt; use at least "
                         f"{len(needle) + len(question)} tokens")
    sentences = [encode(" " + filler_sentence(rng)) for _ in range(budget // 4 + 2)]
    filler = [t for s in sentences for t in s][:budget]
    # Insert the needle at a sentence boundary near the requested depth.
    boundaries = [0] + list(_cumsum(len(s) for s in sentences))
    cut = min((b for b in boundaries if b <= budget), key=lambda b: abs(b - depth * budget))
    ids = filler[:cut] + needle + filler[cut:] + question
    return PasskeyPrompt(input_ids=ids, key=key, depth=depth)


def _cumsum(values):
    total = 0
    for v in values:
        total += v
        yield total


def score_passkey(generated: str, key: str) -> bool:
    """Exact match: the first number in the greedy continuation must equal the key.

    >>> score_passkey(" 48215. The", "48215"), score_passkey(" 4821", "48215")
    (True, False)
    """
    found = re.search(r"\d+", generated)
    return found is not None and found.group(0) == key


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

def tokenizer_training_text(seed: int = 0) -> list[str]:
    """What the kit's tokenizer is trained on: 200 synthetic documents + ~1.5 MB of stdlib source."""
    return synthetic_documents(200, seed=seed) + stdlib_documents(max_chars=1_500_000)


def build_tokenizer(directory: str | Path = DEFAULT_TOKENIZER_DIR, seed: int = 0,
                    vocab_size: int = TOKENIZER_VOCAB_SIZE):
    """Train the kit's tokenizer on :func:`tokenizer_training_text` and save it in ``directory`` (default:
    the package's own copy), with the training text's sha256 so a rebuild can be compared exactly."""
    texts = tokenizer_training_text(seed)
    tokenizer = train_tokenizer(texts, vocab_size)
    save_tokenizer(tokenizer, directory, texts, vocab_size=vocab_size, seed=seed)
    return tokenizer


# --------------------------------------------------------------------------------------------------
# Packing and splitting
# --------------------------------------------------------------------------------------------------

def split_documents(documents: list, val_fraction: float = 0.1) -> tuple[list, list]:
    """Split whole documents into (train, validation): no document contributes to both.

    Document ``i`` goes to validation when ``i % k == k - 1`` with ``k = round(1 / val_fraction)``. The
    rule only looks at the index, so a longer corpus from the same seeded stream keeps every split
    decision of a shorter one (pre-training and extension runs of different sizes never swap documents).

    >>> train, val = split_documents(list(range(10)), val_fraction=0.2)
    >>> train, val
    ([0, 1, 2, 3, 5, 6, 7, 8], [4, 9])
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    every = max(2, round(1 / val_fraction))
    if len(documents) < every:
        raise ValueError(f"{len(documents)} documents give no validation document at val_fraction={val_fraction}; "
                         f"use at least {every} documents or a larger val_fraction")
    train = [d for i, d in enumerate(documents) if i % every != every - 1]
    val = [d for i, d in enumerate(documents) if i % every == every - 1]
    return train, val


def tokenize_documents(documents: list[str], tokenizer) -> list[list[int]]:
    return tokenizer(documents, add_special_tokens=False)["input_ids"]


def join_documents(token_lists: list[list[int]], eos_id: int) -> torch.Tensor:
    """One stream: every document followed by ``eos_id`` (as LongLoRA's fine-tune.py joins RedPajama)."""
    stream = [t for ids in token_lists for t in (*ids, eos_id)]
    return torch.tensor(stream, dtype=torch.long)  # (N,)


def pack(token_lists: list[list[int]], block_length: int, eos_id: int) -> torch.Tensor:
    """Join documents with EOS and cut the stream into full blocks of ``block_length`` (the tail that
    does not fill a block is dropped).

    >>> pack([[1, 2, 3], [4, 5]], block_length=3, eos_id=0).tolist()
    [[1, 2, 3], [0, 4, 5]]
    """
    if block_length < 2:
        raise ValueError(f"block_length must be at least 2, got {block_length}")
    stream = join_documents(token_lists, eos_id)
    n_blocks = len(stream) // block_length
    if n_blocks == 0:
        raise ValueError(f"the data has {len(stream)} tokens, fewer than one block of {block_length}; "
                         "use more documents or a shorter block_length")
    return stream[: n_blocks * block_length].view(n_blocks, block_length)  # (n_blocks, block_length)


# --------------------------------------------------------------------------------------------------
# Named sources (what TrainConfig.data refers to)
# --------------------------------------------------------------------------------------------------

HF_SOURCES = {  # short names for online users; any hub name or save_to_disk folder works too
    "pg19": ("deepmind/pg19", "text"),
    "redpajama-sample": ("togethercomputer/RedPajama-Data-1T-Sample", "text"),
}


def load_hf_documents(name_or_path: str, split: str = "train", text_field: str | None = None,
                      max_documents: int | None = None) -> list[str]:
    """Documents from a Hugging Face ``datasets`` source: a short name in ``HF_SOURCES``, a hub name
    (needs internet), or a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    import datasets

    hub_name, default_field = HF_SOURCES.get(name_or_path, (name_or_path, "text"))
    field = text_field or default_field
    if Path(name_or_path).exists():
        ds = datasets.load_from_disk(name_or_path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{name_or_path} has splits {list(ds)}, not split={split!r}")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(hub_name, split=split, streaming=max_documents is not None)
    if field not in ds.column_names:
        raise ValueError(f"the dataset has columns {ds.column_names}; pass text_field= one of them, not {field!r}")
    documents = []
    for row in ds:
        documents.append(row[field])
        if max_documents is not None and len(documents) >= max_documents:
            break
    return documents


def source_documents(source: str, n_documents: int, seed: int = 0, max_distance: int | None = None) -> list[str]:
    """Documents for ``TrainConfig.data``: ``"synthetic"``, ``"stdlib"``, ``"mix"`` (half each), or
    ``"hf:<name or save_to_disk folder>"``. ``max_distance`` sets the synthetic corpus's longest gap
    between two mentions of a key (``SyntheticSpec`` default when None). Standard-library sources
    leave out ``EVALUATION_FILES``."""
    if source == "synthetic":
        return synthetic_documents(n_documents, seed=seed, max_distance=max_distance)
    if source == "stdlib":
        return stdlib_documents(max_documents=n_documents, exclude=EVALUATION_FILES)
    if source == "mix":
        half = max(1, n_documents // 2)
        return synthetic_documents(half, seed=seed, max_distance=max_distance) + stdlib_documents(
            max_documents=half, exclude=EVALUATION_FILES)
    if source.startswith("hf:"):
        return load_hf_documents(source[3:], max_documents=n_documents)
    raise ValueError(f"data={source!r} is not a source; use 'synthetic', 'stdlib', 'mix' or 'hf:<name or folder>'")


def load_splits(source: str, tokenizer, n_documents: int, val_fraction: float = 0.05,
                seed: int = 0, max_distance: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Tokenized (train, validation) documents of a source, split by document."""
    documents = source_documents(source, n_documents, seed=seed, max_distance=max_distance)
    train, val = split_documents(documents, val_fraction=val_fraction)
    return tokenize_documents(train, tokenizer), tokenize_documents(val, tokenizer)


def validation_stream(source: str, tokenizer, n_documents: int, val_fraction: float = 0.05, seed: int = 0,
                      max_tokens: int | None = None, max_distance: int | None = None) -> torch.Tensor:
    """The validation documents of a source joined with EOS into one token stream (N,), as evaluation
    reads it (like the official eval's memmap of concatenated documents). ``max_distance`` as in
    :func:`load_splits`."""
    _, val = load_splits(source, tokenizer, n_documents, val_fraction, seed, max_distance)
    stream = join_documents(val, tokenizer.eos_token_id)
    return stream if max_tokens is None else stream[:max_tokens]
