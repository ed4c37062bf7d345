"""One way to write anything a run keeps: :func:`atomic_write`, and :func:`recover` after a kill.

A file or folder is written under a temporary name beside its target, then renamed into place, so a
reader sees the old version or the new one, never half of each. A file is replaced by one
``os.replace``. A folder cannot be renamed onto a non-empty folder (POSIX), so replacing one takes two
renames, and a kill can fall between them::

    .checkpoint.tmp-3f2a   written completely            (1) target -> .checkpoint.old-3f2a
    checkpoint             the previous one              (2) .checkpoint.tmp-3f2a -> target
                                                         (3) delete .checkpoint.old-3f2a

The old name shares the new one's suffix: if a kill leaves ``.old-3f2a`` and no target, the swap
had begun, so ``.tmp-3f2a`` is complete and :func:`recover` finishes the swap (an unpaired ``.tmp-``
was never committed and is deleted).

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "result.json"
>>> with atomic_write(target) as tmp:
...     _ = tmp.write_text("{}")
>>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
('{}', ['result.json'])

Guarantees hold for a killed *process* (the kernel keeps what was written); surviving a power cut
would also need ``fsync``, which the kit does not pay for.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

TMP, OLD = ".tmp-", ".old-"


def _boundary(event: str, path: Path) -> None:
    """A hook that does nothing; the kill-injection tests (tests/test_runs.py) replace it to stop the
    process exactly at a write boundary."""


def boundary(event: str, path: Path) -> None:
    """Mark a write boundary: right after a rename or write that changes what is on disk."""
    _boundary(event, path)  # looked up at call time, so a test's replacement is seen by every module


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(target: str | Path, directory: bool = False):
    """Yield a temporary path beside ``target`` (a created, empty folder if ``directory``); when the
    block ends without an error it replaces ``target``; on an error it is deleted and ``target`` kept.

    Made with the process's umask (``mkdtemp`` would give 0700), so a run folder stays readable.
    """
    target = Path(target)
    tmp = target.parent / f".{target.name}{TMP}{secrets.token_hex(4)}"
    if directory:
        os.mkdir(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    move_into_place(tmp, target)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read the umask is to set it: put it straight back
    os.umask(mask)
    return mask


def open_to_readers(path: str | Path) -> None:
    """Give ``path`` (a folder: and all in it) the read permissions the umask allows.

    safetensors writes its files 0600 (``mkdtemp`` folders are 0700): without this a run's weights
    would be unreadable to the other users of a shared machine although the folder around them is not.
    """
    path, allowed = Path(path), ~_umask()
    for p in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        want = (0o555 if p.is_dir() else 0o444) & allowed  # r (and x for a folder) where the umask allows
        if mode & want != want:
            os.chmod(p, mode | want)


def move_into_place(finished: str | Path, target: str | Path) -> Path:
    """Rename the complete file or folder ``finished`` onto ``target`` (``atomic_write``'s last step).

    ``finished`` must be on ``target``'s file system; written beside it as ``atomic_write`` does, a
    kill between a folder swap's two renames can be finished by :func:`recover`. Its permissions are
    first opened to readers as the umask allows (:func:`open_to_readers`)."""
    finished, target = Path(finished), Path(target)
    open_to_readers(finished)
    if not finished.is_dir() or not target.exists():
        os.replace(finished, target)  # one rename: atomic
        boundary("renamed", target)
        return target
    suffix = finished.name.split(TMP)[-1] if TMP in finished.name else secrets.token_hex(4)
    old = target.parent / f".{target.name}{OLD}{suffix}"
    os.rename(target, old)
    boundary("moved aside", old)
    os.rename(finished, target)
    boundary("renamed", target)
    shutil.rmtree(old)
    return target


def write_text(path: str | Path, text: str) -> Path:
    """Atomically replace the file ``path`` with ``text``; return ``path``."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def leftovers(target: Path) -> list[Path]:
    """The temporary and set-aside copies of ``target`` a kill may have left beside it."""
    return sorted(p for p in target.parent.glob(f".{target.name}.*") if TMP in p.name or OLD in p.name)


def recover(target: str | Path) -> str | None:
    """Finish a folder swap a kill interrupted, then delete ``target``'s leftovers.

    Returns ``"finished"`` (the complete new copy was renamed into place), ``"restored"`` (the set-aside
    previous copy was, for a swap from before paired names), or ``None`` (nothing to recover).
    """
    target = Path(target)
    done = None
    if not target.exists():
        for old in (p for p in leftovers(target) if OLD in p.name):
            new = target.parent / old.name.replace(OLD, TMP)
            if new.is_dir():  # the swap had begun, so the new copy was complete
                os.rename(new, target)
                done = "finished"
            else:  # a kit before this one set the old copy aside as old/previous
                os.rename(old / "previous" if (old / "previous").is_dir() else old, target)
                done = "restored"
            break
    for path in leftovers(target):
        _remove(path)
    return done


def read_json(path: str | Path, fix: str) -> dict:
    """The JSON object in ``path``; a missing, damaged or non-object file is a ``ValueError`` saying ``fix``."""
    try:
        value = json.loads(Path(path).read_text())
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is damaged or missing ({err}); {fix}") from None
    return value


__all__ = ["atomic_write", "boundary", "leftovers", "move_into_place", "open_to_readers", "read_json", "recover", "write_text"]
