"""The kit's tokenizer: a byte-level BPE that ships inside the package.

A byte-level BPE (Hugging Face ``tokenizers``) never meets an unknown character: it starts from the
256 bytes and merges the most frequent pairs until the vocabulary has ``vocab_size`` entries. Two
choices are the kit's own:

- **single digits** (as in Llama): a 5-digit passkey is always 5 tokens, so "how far back can the
  model copy from" is measured digit by digit and never depends on how a number happened to merge;
- **one special token**, ``<|endoftext|>`` (id 0), which separates packed documents and also pads.

The files live in ``longlora_kit/assets/tokenizer/`` and are read with :mod:`importlib.resources`,
so a wheel install (not only a clone) finds them. ``data.build_tokenizer`` trains it on the kit's
corpus; this module holds what does not depend on that corpus.

>>> tok = load_tokenizer()
>>> len(tok), tok.eos_token_id
(4096, 0)
>>> tok.convert_ids_to_tokens(tok(" 48215")["input_ids"])[1:]
['4', '8', '2', '1', '5']
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
TOKENIZER_VOCAB_SIZE = 4096
# The committed tokenizer, inside the package (a pathlib.Path for every installed, unzipped package).
DEFAULT_TOKENIZER_DIR = resources.files(__package__) / "assets" / "tokenizer"


def train_tokenizer(texts: list[str], vocab_size: int = TOKENIZER_VOCAB_SIZE):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Deterministic: the same texts always give the same ``tokenizer.json``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)


def texts_fingerprint(texts: list[str]) -> str:
    """sha256 of the training texts, recorded next to the tokenizer so a rebuild can be compared exactly.

    >>> texts_fingerprint(["a", "b"]) == texts_fingerprint(["a", "b"]) != texts_fingerprint(["ab"])
    True
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace"))
        digest.update(b"\0")  # so ["a", "b"] and ["ab"] differ
    return digest.hexdigest()


def save_tokenizer(tokenizer, directory: str | Path, texts: list[str], **meta) -> Path:
    """Save ``tokenizer`` (``tokenizer.json`` and its config) plus ``kit_tokenizer.json``: how it was
    built (``meta``) and the sha256 of its training ``texts``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    record = {**meta, "training_text_sha256": texts_fingerprint(texts),
              "documents": len(texts), "characters": sum(map(len, texts))}
    (directory / "kit_tokenizer.json").write_text(json.dumps(record, indent=2) + "\n")
    return directory


def load_tokenizer(directory: str | Path | None = None):
    """Load a tokenizer folder (offline); ``None`` = the one inside the package. Says how to build one
    when the folder holds none."""
    from transformers import AutoTokenizer

    if directory is None:
        directory = DEFAULT_TOKENIZER_DIR
    # as_file gives a real folder (transformers reads paths) for any package layout (zip: Python >= 3.12)
    with resources.as_file(directory if not isinstance(directory, str) else Path(directory)) as path:
        if not (path / "tokenizer.json").is_file():
            raise ValueError(f"no tokenizer in {path}; build it with `longlora-kit tokenizer --out {path}` "
                             "(or `make tokenizer` for the packaged one)")
        return AutoTokenizer.from_pretrained(str(path))
