"""Multi-process training: the accelerate configs parse, and 2 CPU processes (gloo) train like one.

``accelerate launch`` runs the same ``longlora-kit pretrain`` entry point on two processes; each takes
half of every global batch (``train.batch_indices`` shards by rank) and DDP averages the gradients, so
the losses and the final weights must equal a single process trained on the whole batch.

Sharded runs (DeepSpeed, FSDP) checkpoint through ``accelerator.save_state`` on every process. Neither
engine runs here: DeepSpeed needs CUDA, and accelerate 1.15 does not shard on a CPU: ``fsdp.yaml`` with
``ACCELERATE_USE_CPU=true`` and 2 gloo processes stops in ``Accelerator()`` with ``RuntimeError: There are
currently no available devices found, must be one of 'XPU', 'CUDA', 'MLU', 'NPU', 'MUSA', or 'HPU'.``
(``fsdp_sync_module_states`` asks for a device), and without ``sync_module_states`` (nor
``cpu_ram_efficient_loading``) it silently runs ``MULTI_CPU`` with a plain ``DistributedDataParallel``.
So the 2-process test forces the sharded path with ``--engine-checkpoint`` under DDP.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
EXPECTED = {"ddp.yaml": "MULTI_GPU", "deepspeed_zero2.yaml": "DEEPSPEED", "deepspeed_zero3.yaml": "DEEPSPEED",
            "fsdp.yaml": "FSDP", "cpu_2proc.yaml": "MULTI_GPU"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_configs_parse(name):
    """Each config loads with accelerate's own parser (unknown keys would raise) and says what it is."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type.name == EXPECTED[name]
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-6])  # zero2 -> 2, zero3 -> 3
        assert config.deepspeed_config["gradient_accumulation_steps"] == 1  # the kit's loop accumulates
    if name == "fsdp.yaml":
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert config.fsdp_config["fsdp_use_orig_params"]  # LoRA: frozen and trainable params in one unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _pretrain_on_two_processes(out: Path, *options: str) -> subprocess.CompletedProcess:
    """``longlora-kit pretrain --profile smoke`` under ``accelerate launch``: 2 CPU processes over gloo."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "LONGLORA_KIT_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml"),
           "--main_process_port", str(_free_port()), "-m", "longlora_kit.cli", "pretrain", "--profile", "smoke",
           "--out", str(out), *options]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


STEPS = 4


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """One uninterrupted 2-process run of STEPS steps, shared: the reference of both tests below."""
    out = tmp_path_factory.mktemp("two") / "straight"
    proc = _pretrain_on_two_processes(out, "--steps", str(STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_cpu_processes_match_one(tmp_path, straight):
    from longlora_kit.train import pretrain_config, read_metrics, train

    per_process = pretrain_config(profile="smoke").batch_size
    single = train(pretrain_config(str(tmp_path / "one"), "tiny", "smoke", max_steps=STEPS,
                                   batch_size=2 * per_process, progress=False, measure_memory=False))

    two = [row["loss"] for row in read_metrics(straight)]
    assert len(two) == STEPS
    assert two == pytest.approx(single.losses, rel=1e-5, abs=1e-5)
    one_w, two_w = _weights(tmp_path / "one"), _weights(straight)
    assert one_w.keys() == two_w.keys()
    worst = max((one_w[k] - two_w[k]).abs().max().item() for k in one_w)
    assert worst < 1e-5, f"weights differ by {worst}"
    assert two[-1] < two[0]  # it trained: a run that never updated could not tell synced from unsynced


def test_two_processes_killed_and_resumed_from_an_engine_checkpoint_match_an_uninterrupted_run(tmp_path, straight):
    """Every process saves through ``accelerator.save_state`` (the DeepSpeed / FSDP path, forced with
    --engine-checkpoint; see the module docstring): stop after step 2, resume, finish step 4."""
    import json

    from longlora_kit.train import read_metrics

    run = tmp_path / "resumed"
    killed = _pretrain_on_two_processes(run, "--steps", str(STEPS), "--stop-after", "2", "--engine-checkpoint")
    assert killed.returncode == 0, killed.stderr[-3000:]
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert {k: state[k] for k in ("format", "engine", "processes", "step")} == {
        "format": "accelerate", "engine": "MULTI_CPU", "processes": 2, "step": 2}
    for name in ("model.safetensors", "optimizer.bin", "scheduler.pt", "random_states_0.pkl", "random_states_1.pkl"):
        assert (run / "checkpoint" / name).is_file(), name  # one RNG file per process: both wrote
    assert not (run / "model").exists() and sorted(p.name for p in run.glob(".checkpoint*")) == []

    resumed = _pretrain_on_two_processes(run, "--steps", str(STEPS), "--engine-checkpoint")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "result.json").read_text())["resumed_from"] == 2
    losses = [row["loss"] for row in read_metrics(run)]
    assert losses == [row["loss"] for row in read_metrics(straight)]  # bit-identical on CPU
    assert len(losses) == STEPS and losses[-1] < losses[0]
    ours, theirs = _weights(run), _weights(straight)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
