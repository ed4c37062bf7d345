r"""The result cache: one JSON record per run, keyed by everything that decides its numbers.

Every result is stored under ``cache_dir/<profile>/<key>.json`` with::

    key = sha256(spec, seed, profile settings, code version)[:16]

written atomically (a temporary file, then ``os.replace``), so a rerun is instant, an interrupted
run resumes where it stopped, and two experiments that need the same run (Table 1's S2 arm is
Table 7's ratio 1/4) train it once. The code version is the package version plus a hash of the
source files that compute the numbers (:data:`CODE_FILES` and the tokenizer); Python files count by
their syntax tree (:func:`code_fingerprint`), so a reworded docstring or comment keeps the cache.

>>> from .claims import RunSpec
>>> key = run_key(RunSpec(), 0, {"seeds": 3, "steps": 80}, "0.1.0+abc")
>>> key == run_key(RunSpec(), 0, {"seeds": 5, "steps": 80}, "0.1.0+abc")  # more seeds: same runs
True
>>> key == run_key(RunSpec(lora_r=16), 0, {"seeds": 3, "steps": 80}, "0.1.0+abc")
False
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .claims import RunSpec

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lib/longlora_kit
#: Source files (relative to the package) whose content decides the numbers, hashed into the code
#: version. The report, the tables and the execution are not: their wording may change without
#: invalidating results. A file moved or renamed must be renamed here too (a test checks they exist).
CODE_FILES = ("experiments/toy_runner.py", "train.py", "config.py", "build.py", "recipes.py", "runs/checkpoint.py",
              "runs/metrics.py", "evaluate.py", "data.py", "rope.py", "s2attn.py", "patterns.py", "lora.py",
              "models.py", "tokenizer.py", "kernels/rows.py", "kernels/flash.py", "kernels/flex.py", "families.py")


def code_version(files: Sequence[str] = CODE_FILES) -> str:
    """``<package version>+<hash of the files that compute the numbers>`` (missing files count too).

    Python files are hashed by :func:`code_fingerprint`, so rewording a docstring or a comment keeps
    the cache (a full run is 25 minutes); any change to the code itself invalidates it.
    """
    from .. import __version__
    from ..data import DEFAULT_TOKENIZER_DIR

    digest = hashlib.sha256()
    paths = [PACKAGE_DIR / name for name in files] + [Path(DEFAULT_TOKENIZER_DIR) / "tokenizer.json"]
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        if not path.is_file():
            digest.update(b"<missing>")
        elif path.suffix == ".py":
            digest.update(code_fingerprint(path.read_text()).encode())
        else:
            digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def code_fingerprint(source: str) -> str:
    r"""The syntax tree of Python ``source`` without comments, docstrings or layout.

    >>> documented = 'def f(x):\n    "Doubles x."\n    return 2 * x  # why\n'
    >>> code_fingerprint(documented) == code_fingerprint("def f(x):\n    return 2 * x\n")
    True
    >>> code_fingerprint(documented) == code_fingerprint("def f(x):\n    return 3 * x\n")
    False
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def run_key(spec: RunSpec, seed: int, settings: dict, code: str) -> str:
    """The cache key of one run: a hash of everything that decides its numbers."""
    payload = {"spec": asdict(spec), "seed": seed, "settings": _key_settings(settings), "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _key_settings(settings: dict) -> dict:
    # the number of seeds decides how many runs there are, not what one run computes
    return {k: v for k, v in settings.items() if k != "seeds"}


def load_record(path: Path, key: str) -> dict | None:
    """The record stored at ``path`` if it is one for ``key``; None when absent, corrupt or foreign."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:  # cannot happen with atomic writes, but a hand-edited file might
        return None
    return record if record.get("key") == key else None


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (making its folder) with ``runs.atomic.write_text``: a reader (or a run
    killed half-way) sees the old file or the new one, never half of one.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_atomic(Path(d) / "a" / "b.md", "hello\\n").read_text()
    'hello\\n'
    """
    from ..runs.atomic import write_text  # the kit's one atomic-write helper

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (paths and tuples allowed) with :func:`write_atomic`."""
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
