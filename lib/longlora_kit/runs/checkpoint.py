"""Save and restore everything a run needs to continue exactly where it stopped.

A checkpoint is one folder, swapped in whole by :func:`~longlora_kit.runs.atomic.atomic_write`::

    checkpoint/
        trainable.safetensors   the parameters that train (all of them for method="full")
        optimizer.pt            AdamW's moments     (torch.save of tensors; loaded with weights_only=True)
        scheduler.pt            the lr schedule's step
        rng.pt                  torch (and CUDA) RNG states
        state.json              step, tokens, seconds, the config's fingerprint, Python/NumPy RNG states

Batches are a pure function of ``(seed, step)`` (``train.batch_indices``), so these files are the
whole state: a resumed run gives bit-identical losses on a CPU (tests/test_train.py, tests/test_runs.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .layout import CHECKPOINT_DIR


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _differences(theirs: dict, ours: dict) -> dict:
    return {k: (theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)}


def save_checkpoint(out_dir: Path, model, optimizer, scheduler, step: int, tokens: int, seconds: float,
                    config) -> Path:
    """Write ``out_dir/checkpoint`` atomically (a crash keeps the previous one); return its path."""
    from safetensors.torch import save_file

    final = Path(out_dir) / CHECKPOINT_DIR
    try:
        with atomic_write(final, directory=True) as tmp:
            save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng["cuda"] = torch.cuda.get_rng_state_all()
            torch.save(rng, tmp / "rng.pt")
            np_state = np.random.get_state()
            py_state = random.getstate()
            state = {"step": step, "tokens": tokens, "seconds": seconds, "config": config.fingerprint(),
                     "python_random": [py_state[0], list(py_state[1]), py_state[2]],
                     "numpy_random": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
            (tmp / "state.json").write_text(json.dumps(state))
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        raise OSError(f"could not write the checkpoint in {final.parent} ({err}); the previous checkpoint is "
                      "kept: free space there and re-run the same command to resume") from err
    return final


def _damaged(path: Path, err) -> ValueError:
    reason = (str(err).splitlines() or [type(err).__name__])[0][:120]  # one line, not torch's whole essay
    return ValueError(f"the checkpoint file {path} is damaged or missing ({reason}); delete {path.parent} to "
                      "restart the run from step 0, or re-run with --overwrite")


def load_checkpoint(directory: Path, model, optimizer, scheduler, config) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` (refusing one of another config)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state_file = directory / "state.json"
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a checkpoint (no state.json)")
    try:
        state = json.loads(state_file.read_text())
        theirs, step = state["config"], state["step"]
        if not (isinstance(theirs, dict) and isinstance(step, int)):
            raise ValueError("no config or step")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _damaged(state_file, err) from None
    diff = _differences(theirs, config.fingerprint())
    if diff:
        raise ValueError(f"the checkpoint in {directory} belongs to another config; (checkpoint, now) differ in "
                         f"{diff}; resume with the same settings or start in a new out_dir")
    path = directory / "trainable.safetensors"
    try:
        weights = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise _damaged(path, err) from None
    params = dict(model.named_parameters())
    if set(weights) != {n for n, p in params.items() if p.requires_grad}:
        raise ValueError(f"the checkpoint in {directory} holds other trainable parameters than this model")
    loaded = {}
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        try:  # weights_only: tensors and plain containers, never arbitrary pickled objects
            loaded[name] = torch.load(directory / name, weights_only=True)
        except Exception:  # never retried with weights_only=False: that would run pickled code
            raise _damaged(directory / name, "not a tensors-only torch.save file") from None
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    try:
        optimizer.load_state_dict(loaded["optimizer.pt"])
        scheduler.load_state_dict(loaded["scheduler.pt"])
        torch.set_rng_state(loaded["rng.pt"]["torch"])
        if "cuda" in loaded["rng.pt"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(loaded["rng.pt"]["cuda"])
        py, np_state = state["python_random"], state["numpy_random"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
        raise _damaged(directory, err) from None
    return state


__all__ = ["load_checkpoint", "save_checkpoint"]
