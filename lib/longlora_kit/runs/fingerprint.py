"""A run's fingerprint: its settings plus what its inputs *contain*, so a changed input is never reused.

A re-trained base keeps its path, so the path alone would let ``extend`` hand back a run made from
the old weights. :func:`content_hash` reads, per weight file, its size, its safetensors header and
three 64 KiB samples (start, middle, end): re-training changes every weight, so the hash changes, and
it costs a few hundred KiB of reading even for a 7B model (a cheap change detector, not a defence
against deliberate forgery).

>>> import tempfile, pathlib, torch
>>> from safetensors.torch import save_file
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text('{"model_type": "llama"}')
>>> save_file({"w": torch.zeros(4)}, str(folder / "model.safetensors"))
>>> before = content_hash(folder)
>>> save_file({"w": torch.ones(4)}, str(folder / "model.safetensors"))  # "re-trained"
>>> content_hash(folder) != before
True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SAMPLE = 64 * 1024
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
_RECREATE = "re-create it (`longlora-kit pretrain --overwrite`) or point --base at a good copy"


def _safetensors_header(path: Path, size: int, f) -> bytes:
    """The JSON header, checked against the file size (a truncated or garbage file fails here)."""
    length = int.from_bytes(f.read(8), "little")
    if size < 8 or length > size - 8:
        raise ValueError(f"base_model file {path} is not a safetensors file (damaged or truncated); {_RECREATE}")
    header = f.read(length)
    try:
        ends = [v["data_offsets"][1] for k, v in json.loads(header).items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise ValueError(f"base_model file {path} has a damaged safetensors header; {_RECREATE}") from None
    if max(ends, default=0) > size - 8 - length:
        raise ValueError(f"base_model file {path} is truncated ({size} bytes); {_RECREATE}")
    return header


def content_hash(folder: str | Path) -> str:
    """A short hash of a ``save_pretrained`` folder's config and weights (see the module docstring)."""
    folder = Path(folder)
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"base_model={str(folder)!r} is not a save_pretrained folder (no config.json); "
                         "pre-train one with `longlora-kit pretrain`")
    digest = hashlib.sha256(config.read_bytes())
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            if path.suffix == ".safetensors":
                digest.update(_safetensors_header(path, size, f))
            for offset in (0, size // 2, max(0, size - SAMPLE)):
                f.seek(offset)
                digest.update(f.read(SAMPLE))
    return digest.hexdigest()[:16]


def tokenizer_hash(tokenizer) -> str:
    """A short hash of a tokenizer's vocabulary, merges and special tokens (its full serialised form)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    text += json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_fingerprint(config, tokenizer) -> dict:
    """``config.fingerprint()`` plus the content hashes of its base model and tokenizer (JSON-ready)."""
    base = None if config.base_model is None else content_hash(config.base_model)
    return {**config.fingerprint(), "base_model_content": base, "tokenizer_content": tokenizer_hash(tokenizer)}


__all__ = ["content_hash", "run_fingerprint", "tokenizer_hash"]
