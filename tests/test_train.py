"""longlora_kit.train: chunked loss, batches, schedule, the loop, checkpoints/resume, bad input, CLI."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from longlora_kit import data, lora, runs, train
from longlora_kit.models import build_model, tiny_config

MICRO = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=32)


def micro_config(out_dir, **overrides) -> train.TrainConfig:
    fields = dict(out_dir=str(out_dir), model_overrides=MICRO, seq_len=32, batch_size=2, max_steps=6, lr=3e-3,
                  warmup_steps=2, n_documents=20, progress=False, measure_memory=False)
    fields.update(overrides)
    return train.TrainConfig(**fields)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A micro model pre-trained for 4 steps (saved under model/)."""
    out = tmp_path_factory.mktemp("base")
    train.train(micro_config(out, max_steps=4))
    return out / train.MODEL_DIR


# ------------------------------------------------------------------------------------------- loss

@pytest.mark.parametrize("chunk", [1, 7, 2048])
@pytest.mark.parametrize("method", ["full", "lora+"])
def test_chunked_loss_and_gradient_equal_the_plain_ones(chunk, method):
    model = lora.apply(build_model(tiny_config(vocab_size=97, num_hidden_layers=2)), method)
    ids = torch.randint(0, 97, (2, 24))
    params = [p for p in model.parameters() if p.requires_grad]

    reference = model(input_ids=ids, labels=ids).loss  # transformers' own loss
    ref_grads = torch.autograd.grad(reference, params)
    ours = train.model_loss(model, ids, chunk=chunk)
    our_grads = torch.autograd.grad(ours, params)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(our_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_chunked_loss_matches_cross_entropy_of_logits():
    hidden, head = torch.randn(3, 10, 8), torch.nn.Linear(8, 11, bias=False)
    ids = torch.randint(0, 11, (3, 10))
    expected = F.cross_entropy(head(hidden)[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(train.chunked_causal_lm_loss(hidden, head, ids, chunk=3), expected)
    with pytest.raises(ValueError, match="chunk"):
        train.chunked_causal_lm_loss(hidden, head, ids, chunk=0)


# --------------------------------------------------------------------------------- batches, schedule

def test_batches_are_a_function_of_step_and_cover_each_epoch():
    config = train.TrainConfig(batch_size=3, grad_accum=2, seed=5)
    seen = torch.cat([train.batch_indices(s, m, config, 12) for s in range(2) for m in range(2)])
    assert sorted(seen.tolist()) == list(range(12))  # one epoch = 12 blocks, each once
    again = train.batch_indices(1, 1, config, 12)
    assert torch.equal(again, train.batch_indices(1, 1, config, 12))
    ranks = [train.batch_indices(0, 0, config, 12, rank=r, world=2) for r in range(2)]
    assert not set(ranks[0].tolist()) & set(ranks[1].tolist())


def test_lr_schedule_warms_up_linearly_then_constant_or_cosine():
    constant = train.TrainConfig(warmup_steps=3, max_steps=10)
    assert [train.lr_factor(s, constant) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = train.TrainConfig(warmup_steps=0, max_steps=10, lr_schedule="cosine")
    assert train.lr_factor(0, cosine) == 1.0 and train.lr_factor(5, cosine) == pytest.approx(0.5)
    assert train.lr_factor(10, cosine) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------- the loop

def test_training_lowers_the_loss_and_writes_a_run(tmp_path):
    result = train.train(micro_config(tmp_path, max_steps=30, measure_memory=True))
    assert result.finished and result.steps == 30 and len(result.losses) == 30
    assert sum(result.losses[-5:]) / 5 < result.losses[0] - 1.0
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 0
    for name in (train.CONFIG_FILE, train.METRICS_FILE, train.RESULT_FILE, "checkpoint/trainable.safetensors",
                 "model/config.json", "model/tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    rows = train.read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 31)) and rows[0]["tokens_per_s"] > 0
    again = train.train(micro_config(tmp_path, max_steps=30))  # same run again: reloaded, not retrained
    assert again.losses == result.losses and again.seconds == result.seconds
    ids = torch.randint(0, 100, (1, 16))
    torch.testing.assert_close(again.model(ids).logits, result.model(ids).logits)


@pytest.mark.parametrize("method,attention", [("full", "full"), ("lora+", "s2"), ("lora", "s2_paper")])
def test_a_killed_and_resumed_run_gives_the_same_curve(tmp_path, base_dir, method, attention):
    def config(out, **kw):
        return micro_config(out, base_model=str(base_dir), target_length=64, seq_len=64, method=method,
                            attention=attention, **kw)

    straight = train.train(config(tmp_path / "straight"))
    killed = train.train(config(tmp_path / "resumed", stop_after=3))
    assert not killed.finished and killed.steps == 3
    resumed = train.train(config(tmp_path / "resumed"))
    assert resumed.resumed_from == 3
    assert resumed.losses == straight.losses  # bit-identical on CPU
    ids = torch.randint(0, 100, (1, 48))
    assert torch.equal(resumed.model(ids).logits, straight.model(ids).logits)


def test_an_engine_checkpoint_resumes_like_an_uninterrupted_run(tmp_path):
    """The DeepSpeed / FSDP checkpoint (accelerator.save_state / load_state), forced in one process."""
    import shutil
    from types import SimpleNamespace

    straight = train.train(micro_config(tmp_path / "straight"))
    killed = train.train(micro_config(tmp_path / "resumed", stop_after=3, engine_checkpoint=True))
    assert not killed.finished
    checkpoint = tmp_path / "resumed" / "checkpoint"
    state = json.loads((checkpoint / "state.json").read_text())
    assert (state["format"], state["step"], state["processes"]) == ("accelerate", 3, 1)
    assert (checkpoint / "optimizer.bin").is_file() and not (checkpoint / "trainable.safetensors").exists()
    assert not runs.atomic.leftovers(checkpoint)  # the temporary folder was swapped in
    shutil.copytree(tmp_path / "resumed", tmp_path / "no-rng")
    (tmp_path / "no-rng" / "checkpoint" / "random_states_0.pkl").unlink()  # accelerate would skip it silently
    with pytest.raises(ValueError, match="random_states_0.pkl is damaged or missing"):
        train.train(micro_config(tmp_path / "no-rng", engine_checkpoint=True))
    with pytest.raises(ValueError, match=r"written another way.*'format': \('accelerate', 'kit'\)"):
        train.train(micro_config(tmp_path / "resumed"))  # the kit's own format cannot read it
    two = SimpleNamespace(distributed_type=SimpleNamespace(name="NO"), num_processes=2, process_index=0)
    with pytest.raises(ValueError, match=r"written another way.*'processes': \(1, 2\)"):  # before load_state
        runs.load_engine_checkpoint(checkpoint, two, None, micro_config(tmp_path / "resumed"))
    resumed = train.train(micro_config(tmp_path / "resumed", engine_checkpoint=True))
    assert resumed.resumed_from == 3
    assert resumed.losses == straight.losses  # bit-identical on CPU
    ids = torch.randint(0, 100, (1, 24))
    assert torch.equal(resumed.model(ids).logits, straight.model(ids).logits)


def test_extension_applies_position_interpolation_and_lora_plus(tmp_path, base_dir):
    result = train.train(micro_config(tmp_path, base_model=str(base_dir), target_length=128, seq_len=128,
                                      method="lora+", attention="s2", max_steps=2))
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "linear" and saved["rope_parameters"]["factor"] == 4.0
    assert saved["max_position_embeddings"] == 128
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert result.trainable_parameters < result.total_parameters


# ------------------------------------------------------------------------------------------ errors

def test_tokenizer_larger_than_the_model_vocabulary(tmp_path):
    small = build_model(tiny_config(vocab_size=512))
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="tokenizer has 4096 tokens but the model's vocab_size is 512"):
        train.train(micro_config(tmp_path / "run", base_model=str(tmp_path / "small")))
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_sequence_length_the_group_size_does_not_divide(tmp_path):
    with pytest.raises(ValueError, match="seq_len=36 .* use L=32 or L=40"):
        train.train(micro_config(tmp_path, seq_len=36, attention="s2"))
    assert not tmp_path.joinpath(train.CONFIG_FILE).exists()


def test_out_dir_holding_another_run_is_refused_and_kept(tmp_path):
    train.train(micro_config(tmp_path, max_steps=2))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"holds another run.*'lr': \(0.003, 0.001\)"):
        train.train(micro_config(tmp_path, max_steps=2, lr=1e-3))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no kit run"):
        train.train(micro_config(other, overwrite=True))
    assert (other / "notes.txt").read_text() == "mine"
    replaced = train.train(micro_config(tmp_path, max_steps=2, lr=1e-3, overwrite=True))
    assert replaced.finished


def test_resuming_from_a_checkpoint_of_another_config(tmp_path):
    train.train(micro_config(tmp_path / "a", max_steps=2))
    config = micro_config(tmp_path / "b", max_steps=2, batch_size=4)
    model = train.build_for_training(config, data.load_tokenizer())
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(ValueError, match=r"another config.*'batch_size': \(2, 4\)"):
        train.load_checkpoint(tmp_path / "a" / "checkpoint", model, optimizer, scheduler, config)


def test_bad_choices(tmp_path):
    for field, value in [("method", "qlora"), ("attention", "flash2"), ("lr_schedule", "step")]:
        with pytest.raises(ValueError, match=field):
            train.train(micro_config(tmp_path, **{field: value}))
    with pytest.raises(ValueError, match="pretrain"):
        train.train(micro_config(tmp_path, base_model=str(tmp_path / "nothing")))
    with pytest.raises(ValueError, match="preset"):
        train.recipe("llama-9000", "pretrain")


def test_a_bad_config_fails_before_out_dir_is_claimed(tmp_path):
    for overrides in (dict(attention_pattern="bogus"), dict(loss_chunk=0), dict(save_every=-1)):
        with pytest.raises(ValueError, match=next(iter(overrides))):
            train.train(micro_config(tmp_path / "run", **overrides))
        assert not (tmp_path / "run").exists()


def test_a_base_the_kit_cannot_train_is_refused_before_anything_is_written(tmp_path, base_dir):
    import shutil

    from transformers import GPT2Config

    def broken(name, edit):
        folder = tmp_path / name
        shutil.copytree(base_dir, folder)
        edit(folder)
        return str(folder)

    weights = base_dir / "model.safetensors"
    cases = {
        "garbage": (lambda f: (f / "model.safetensors").write_bytes(b"\xff" * 64), "not a safetensors file"),
        "truncated": (lambda f: (f / "model.safetensors").write_bytes(weights.read_bytes()[:-999]), "is truncated"),
        "config": (lambda f: (f / "config.json").write_text("{oops"), "config.json cannot be read"),
        "gpt2": (lambda f: GPT2Config().save_pretrained(f), "is a 'gpt2' model; the kit trains Llama"),
    }
    for name, (edit, match) in cases.items():
        with pytest.raises(ValueError, match=match):
            train.train(micro_config(tmp_path / f"run-{name}", base_model=broken(name, edit)))
        assert not (tmp_path / f"run-{name}").exists(), name


def test_load_result_refuses_duplicated_rows(tmp_path):
    train.train(micro_config(tmp_path, max_steps=2))
    assert len(train.load_result(tmp_path).losses) == 2
    runs.append_row(tmp_path, {"step": 2, "loss": 1.0})
    with pytest.raises(ValueError, match="metrics.jsonl line 3 is damaged"):
        train.load_result(tmp_path)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    train.train(micro_config(tmp_path, max_steps=4, stop_after=2))
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if "optimizer" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=rf"could not write the checkpoint in {tmp_path} .* re-run the same command"):
        train.train(micro_config(tmp_path, max_steps=4))
    monkeypatch.undo()
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 2
    assert train.train(micro_config(tmp_path, max_steps=4)).resumed_from == 2


@pytest.mark.parametrize("profile", ["smoke", "workshop", "full"])
def test_tiny_recipe_lengths_and_rope(profile):
    pre, ext = train.recipe("tiny", "pretrain", profile), train.recipe("tiny", "extend", profile)
    assert pre["max_distance"] == pre["seq_len"] == pre["model_overrides"]["max_position_embeddings"]
    assert ext["seq_len"] == ext["target_length"] == ext["max_distance"] == 4 * pre["seq_len"]
    assert ext["rope_method"] == "yarn" and ext["attention"] == "s2" and ext["method"] == "lora+"


# --------------------------------------------------------------------------------------------- CLI

def test_cli_pretrain_extend_eval_with_defaults(tmp_path, monkeypatch, capsys):
    from longlora_kit import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", "--profile", "smoke", "--steps", "3"]) == 0
    assert cli.main(["extend", "--profile", "smoke", "--steps", "2"]) == 0
    assert cli.main(["eval", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "final loss" in out and "LongLoRA" in out and "YaRN zero-shot" in out and "ppl@256" in out
    assert Path("runs/pretrain/model/config.json").is_file() and Path("runs/extend/adapter").is_dir()
    assert Path("runs/eval/eval.json").is_file()
    # a different setting in the same --out is refused with one clear line
    assert cli.main(["pretrain", "--profile", "smoke", "--steps", "4"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert cli.main(["pretrain", "--profile", "smoke", "--save-every", "-1", "--out", "runs/x"]) == 2
    assert "save_every must be >= 0, got -1" in capsys.readouterr().err and not Path("runs/x").exists()
