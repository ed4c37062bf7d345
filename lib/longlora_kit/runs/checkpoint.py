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

**Sharded runs** (DeepSpeed ZeRO, FSDP; or ``engine_checkpoint=True``): no single process holds the whole
optimiser state, so *every* process calls :func:`save_engine_checkpoint`, and ``accelerator.save_state``
writes its shard into one temporary folder; the main process adds ``scheduler.pt`` and ``state.json``
(with ``"format": "accelerate"``, the engine and the process count) and swaps the folder in the same way.
:func:`load_engine_checkpoint` resumes with ``accelerator.load_state`` under the same engine and process
count (anything else is refused). accelerate pickles each process's RNG states (``random_states_<rank>.pkl``,
read back with ``weights_only=True``) and, unlike the kit, skips them silently if unreadable, so the
kit checks that they were restored (tests/test_multigpu.py, tests/test_train.py).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .atomic import TMP, atomic_write, move_into_place
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


def _read_state(directory: Path, config, layout: dict) -> dict:
    """``state.json``, checked against ``config`` and the way this run writes checkpoints (``layout``)."""
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
    state.setdefault("format", "kit")  # the kit's own checkpoints predate the field
    diff = _differences({k: state.get(k) for k in layout}, layout)
    if diff:
        raise ValueError(f"the checkpoint in {directory} was written another way; (checkpoint, now) differ in {diff}; "
                         "resume with the same accelerate config and engine_checkpoint setting, or start in a new out_dir")
    return state


def load_checkpoint(directory: Path, model, optimizer, scheduler, config) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint` (refusing one of another config)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    state = _read_state(directory, config, {"format": "kit"})
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


# ------------------------------------------------------------------- sharded runs: the engine's own state

def uses_engine_state(accelerator, config) -> bool:
    """Whether checkpoints go through ``accelerator.save_state``: always under DeepSpeed and FSDP, whose
    optimiser state (and ZeRO-3 / FSDP weights) is split over the processes; elsewhere if asked."""
    return config.engine_checkpoint or accelerator.distributed_type.name in ("DEEPSPEED", "FSDP")


def _engine_layout(accelerator) -> dict:
    return {"format": "accelerate", "engine": accelerator.distributed_type.name, "processes": accelerator.num_processes}


def save_engine_checkpoint(out_dir: Path, accelerator, scheduler, step: int, tokens: int, seconds: float,
                           config) -> Path:
    """Every process calls this: each writes its shard with ``accelerator.save_state`` into one temporary
    folder, then the main process adds the scheduler and ``state.json`` and swaps the folder in."""
    final = Path(out_dir) / CHECKPOINT_DIR
    tmp = final.parent / f".{final.name}{TMP}step{step}"  # one name every process agrees on
    main = accelerator.is_main_process
    if main and tmp.exists():
        shutil.rmtree(tmp)  # a leftover of a killed attempt (claim_out_dir normally removed it)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimiser (shards), RNG states of this process
    if main:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        state = {"step": step, "tokens": tokens, "seconds": seconds, "config": config.fingerprint(),
                 **_engine_layout(accelerator)}
        (tmp / "state.json").write_text(json.dumps(state))
    accelerator.wait_for_everyone()  # every shard is on disk before the swap
    if main:
        move_into_place(tmp, final)
    accelerator.wait_for_everyone()
    return final


def load_engine_checkpoint(directory: Path, accelerator, scheduler, config) -> dict:
    """Every process calls this: restore a checkpoint of :func:`save_engine_checkpoint` (same engine,
    same number of processes) with ``accelerator.load_state``."""
    from accelerate.utils import load as accelerate_load  # torch.load(weights_only=True) + NumPy's RNG types

    directory = Path(directory)
    state = _read_state(directory, config, _engine_layout(accelerator))
    rng_file = directory / f"random_states_{accelerator.process_index}.pkl"
    try:
        accelerator.load_state(str(directory))
        scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
    except Exception as err:  # torch, safetensors and the engines raise their own error types
        raise _damaged(directory, err) from None
    try:  # accelerate only logs a failed RNG restore: check that this process's states came back
        restored = torch.equal(accelerate_load(rng_file)["torch_manual_seed"], torch.get_rng_state())
    except Exception as err:
        raise _damaged(rng_file, err) from None
    if not restored:
        raise _damaged(rng_file, "accelerate did not restore the RNG states")
    return state


__all__ = ["load_checkpoint", "load_engine_checkpoint", "save_checkpoint", "save_engine_checkpoint", "uses_engine_state"]
