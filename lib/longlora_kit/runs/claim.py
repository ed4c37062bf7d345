"""Claiming ``--out``: what the folder holds, whether this run may write there, and a lock while it does.

:func:`check_out_dir` only reads. It answers ``"new"`` (absent, empty, or a claim that never
completed), ``"same"`` (this run, to resume), ``"finished"`` (this run, done: reuse it) or
``"replace"`` (a kit run and ``overwrite``), and refuses everything else with a ``ValueError``
naming what differs. :func:`claim_out_dir` acts on the answer, once the run is known to start:

1. creates the folder (with the process's umask) and takes the lock: a second run into the same
   folder *refuses*, naming the first run's pid; a dead run's lock is free (``flock`` dies with
   its process), so a stale lock file is simply taken over;
2. checks again under the lock (another run may have written meanwhile);
3. ``replace``: deletes the old run, which is only allowed for a folder holding the kit's marker file
   and never for one that contains ``base_model``;
4. writes the marker and ``train_config.json`` (the run fingerprint), each atomically;
5. finishes or undoes any folder swap a kill interrupted, and deletes temporary leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from .atomic import _remove, read_json, recover, write_text
from .layout import CONFIG_FILE, LOCK_FILE, MARKER_FILE, METRICS_FILE, RESULT_FILE, SWAPPED_DIRS


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_path(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} is a file; choose a folder path for --out")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"out_dir={str(out)!r} lies under the file {str(parent)!r}; choose a folder path")


def read_config(out: Path) -> dict:
    """The fingerprint saved in ``out/train_config.json`` (a clear error if the file was damaged)."""
    return read_json(out / CONFIG_FILE, "restore it, or re-run with --overwrite to start over")


def check_out_dir(config, fingerprint: dict, probe_lock: bool = True) -> tuple[Path, str]:
    """What ``config.out_dir`` holds for the run ``fingerprint``, without touching it (see the module docstring).

    A folder another live run holds is refused at once (``probe_lock=False``: we hold the lock ourselves)."""
    out = Path(config.out_dir)
    _check_path(out)
    holder = locked_by(out) if probe_lock and out.is_dir() else None
    if holder is not None:
        raise _in_use(out, holder)
    names = {p.name for p in out.iterdir()} - {LOCK_FILE} if out.is_dir() else set()
    if not names - {MARKER_FILE}:
        return out, "new"
    if MARKER_FILE not in names:
        raise ValueError(f"out_dir={str(out)!r} is not empty and holds no kit run (no {MARKER_FILE} marker); "
                         "choose another --out (--overwrite only replaces folders the kit made)")
    if config.overwrite:
        if config.base_model is not None and _inside(Path(config.base_model), out):
            raise ValueError(f"base_model={config.base_model!r} lies inside out_dir={str(out)!r}: --overwrite would "
                             "delete the model being trained; choose another --out")
        return out, "replace"
    if CONFIG_FILE not in names:
        return out, "new"  # killed while claiming: nothing of the run was written yet
    theirs = read_config(out)
    diff = {k: (theirs.get(k), fingerprint.get(k)) for k in sorted(set(theirs) | set(fingerprint))
            if theirs.get(k) != fingerprint.get(k)}
    if diff:
        raise ValueError(f"out_dir={str(out)!r} holds another run; (there, now) differ in {diff}. Choose "
                         "another --out, or pass overwrite=True (--overwrite) to replace it")
    return out, "finished" if (out / RESULT_FILE).is_file() else "same"


def _in_use(out: Path, holder: str) -> ValueError:
    return ValueError(f"out_dir={str(out)!r} is in use by another run (pid {holder or 'unknown'}); wait for it "
                      "to finish, or choose another --out")


def locked_by(out: Path) -> str | None:
    """The pid written by the run holding ``out``'s lock, or None if no live process holds it."""
    path = Path(out) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # free: no run, or a dead one (flock dies with its process)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lock(out: Path):
    """Hold ``out/.longlora-kit.lock`` (``flock``) for the block, with our pid in it; refuse if it is held."""
    if fcntl is None:  # Windows: no flock; runs go unlocked there
        yield
        return
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"cannot write in out_dir={str(out)!r} ({err.strerror}); choose a writable folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(out, os.pread(fd, 64, 0).decode(errors="replace").strip()) from None
        os.ftruncate(fd, 0)  # a stale lock file (a dead run's pid) is simply taken over
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would let two runs lock two files)


@contextlib.contextmanager
def claim_out_dir(config, fingerprint: dict, enabled: bool = True):
    """Claim ``config.out_dir`` for this run and hold it for the block (see the module docstring).

    ``enabled=False`` (the non-main processes of a multi-GPU run) claims nothing.
    """
    if not enabled:
        yield Path(config.out_dir)
        return
    out = Path(config.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create out_dir={str(out)!r} ({err.strerror}); choose a writable folder") from None
    with _lock(out):
        _, state = check_out_dir(config, fingerprint, probe_lock=False)  # again: another run may have written
        if state == "replace":
            for path in out.iterdir():
                if path.name != LOCK_FILE:
                    _remove(path)
        if state in ("new", "replace"):
            write_text(out / MARKER_FILE, json.dumps({"made_by": "longlora-kit"}) + "\n")
            write_text(out / CONFIG_FILE, json.dumps(fingerprint, indent=2) + "\n")
        for name in SWAPPED_DIRS:
            recover(out / name)
        for name in (CONFIG_FILE, MARKER_FILE, RESULT_FILE, METRICS_FILE):
            recover(out / name)  # a file has no swap to finish; this deletes its temporary copies
        yield out


__all__ = ["check_out_dir", "claim_out_dir", "locked_by", "read_config"]
