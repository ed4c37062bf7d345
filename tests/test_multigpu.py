"""Multi-process training: the accelerate configs parse, and 2 CPU processes (gloo) train like one.

``accelerate launch`` runs the same ``longlora-kit pretrain`` entry point on two processes; each takes
half of every global batch (``train.batch_indices`` shards by rank) and DDP averages the gradients, so
the losses and the final weights must equal a single process trained on the whole batch.
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


def test_two_cpu_processes_match_one(tmp_path):
    from longlora_kit.train import pretrain_config, read_metrics, train

    steps, per_process = 2, pretrain_config(profile="smoke").batch_size
    single = train(pretrain_config(str(tmp_path / "one"), "tiny", "smoke", max_steps=steps,
                                   batch_size=2 * per_process, progress=False, measure_memory=False))

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "LONGLORA_KIT_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml"),
           "--main_process_port", str(_free_port()), "-m", "longlora_kit.cli", "pretrain", "--profile", "smoke",
           "--steps", str(steps), "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    two = [row["loss"] for row in read_metrics(tmp_path / "two")]
    assert len(two) == steps
    assert two == pytest.approx(single.losses, rel=1e-5, abs=1e-5)
    one_w, two_w = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one_w.keys() == two_w.keys()
    worst = max((one_w[k] - two_w[k]).abs().max().item() for k in one_w)
    assert worst < 1e-5, f"weights differ by {worst}"
    assert two[-1] < two[0]  # it trained: a run that never updated could not tell synced from unsynced
