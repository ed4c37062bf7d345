"""longlora_kit.runs: atomic writes and recovery, metrics, checkpoints, fingerprints, claiming --out,
and kill injection at every write boundary of a training run (docs/reliability.md)."""

import doctest
import os
import stat
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from longlora_kit import runs, train
from longlora_kit.runs import atomic, checkpoint, claim, fingerprint, layout, metrics

MICRO = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=16)


def micro_config(out_dir, **overrides) -> train.TrainConfig:
    fields = dict(out_dir=str(out_dir), model_overrides=MICRO, seq_len=16, batch_size=2, max_steps=4, lr=3e-3,
                  warmup_steps=1, n_documents=20, progress=False, measure_memory=False)
    fields.update(overrides)
    return train.TrainConfig(**fields)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if atomic.TMP in p.name or atomic.OLD in p.name)


@pytest.mark.parametrize("module", [runs, atomic, checkpoint, claim, fingerprint, layout, metrics])
def test_docstring_examples(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# ---------------------------------------------------------------------------------------- atomic

class Killed(BaseException):
    """Stands for SIGKILL: a BaseException, so no `except Exception` cleanup runs."""


def kill_at(monkeypatch, n: int) -> list:
    """Make the n-th write boundary (1-based) kill the run; return the list of boundaries passed."""
    events = []

    def boundary(event, path):
        events.append(f"{event} {path.name}")
        if len(events) == n:
            raise Killed(events[-1])

    monkeypatch.setattr(atomic, "_boundary", boundary)
    return events


def test_atomic_write_replaces_files_and_folders_with_umask_permissions(tmp_path):
    runs.write_text(tmp_path / "a.json", "1")
    runs.write_text(tmp_path / "a.json", "2")
    for n in (1, 2):
        with runs.atomic_write(tmp_path / "d", directory=True) as tmp:
            (tmp / "f").write_text(str(n))
    assert (tmp_path / "a.json").read_text() == "2" and (tmp_path / "d" / "f").read_text() == "2"
    assert leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask


def test_files_written_0600_are_opened_to_readers_as_the_umask_allows(tmp_path):
    umask = os.umask(0o027)  # others get nothing, the group may read
    try:
        with runs.atomic_write(tmp_path / "model", directory=True) as tmp:
            save_file({"w": torch.zeros(2)}, tmp / "model.safetensors")  # safetensors writes 0600
            os.close(os.open(tmp / "secret", os.O_CREAT | os.O_WRONLY, 0o600))
            (tmp / "sub").mkdir(mode=0o700)
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").rglob("*")}
    assert modes == {"model.safetensors": 0o640, "secret": 0o640, "sub": 0o750}


def test_a_failed_write_keeps_the_old_version_and_leaves_nothing(tmp_path):
    runs.write_text(tmp_path / "a.json", "old")
    with pytest.raises(OSError), runs.atomic_write(tmp_path / "a.json") as tmp:
        tmp.write_text("half")
        raise OSError("disk full")
    assert (tmp_path / "a.json").read_text() == "old" and leftovers(tmp_path) == []


def test_recover_finishes_a_swap_killed_between_its_two_renames(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint"
    with runs.atomic_write(target, directory=True) as tmp:
        (tmp / "step").write_text("2")
    kill_at(monkeypatch, 1)  # right after the old copy was moved aside
    with pytest.raises(Killed), runs.atomic_write(target, directory=True) as tmp:
        (tmp / "step").write_text("4")
    assert not target.exists() and len(leftovers(tmp_path)) == 2  # .old- (step 2) and .tmp- (step 4)
    assert runs.recover(target) == "finished"
    assert (target / "step").read_text() == "4" and leftovers(tmp_path) == []


def test_recover_restores_the_old_layouts_set_aside_copy_and_drops_unfinished_ones(tmp_path):
    target = tmp_path / "checkpoint"
    (tmp_path / ".checkpoint.old-k2j_x" / "previous").mkdir(parents=True)  # the kit before this one
    (tmp_path / ".checkpoint.old-k2j_x" / "previous" / "step").write_text("2")
    (tmp_path / ".checkpoint.tmp-a8c1").mkdir()  # unpaired: never committed
    assert runs.recover(target) == "restored" and (target / "step").read_text() == "2"
    assert leftovers(tmp_path) == []
    (tmp_path / ".checkpoint.tmp-ffff").mkdir()  # a kill while writing, target intact
    assert runs.recover(target) is None and leftovers(tmp_path) == [] and target.is_dir()


def test_read_json_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"x.json is damaged .* restore it"):
        runs.read_json(tmp_path / "x.json", "restore it")


# --------------------------------------------------------------------------------------- metrics

def test_metrics_drop_a_cut_last_line_on_resume_but_refuse_damage_and_duplicates(tmp_path):
    for step in (1, 2):
        runs.append_row(tmp_path, {"step": step, "loss": 1.0})
    with open(tmp_path / runs.METRICS_FILE, "a") as f:
        f.write('{"step": 3, "lo')  # a kill mid-write
    with pytest.raises(ValueError, match=r"metrics.jsonl line 3 is damaged"):
        runs.read_metrics(tmp_path)
    assert [r["step"] for r in runs.truncate(tmp_path, step=5)] == [1, 2]
    runs.append_row(tmp_path, {"step": 2, "loss": 1.0})  # a duplicated row
    with pytest.raises(ValueError, match=r"line 3 is damaged \(step 2 does not follow step 2\)"):
        runs.read_metrics(tmp_path)


# ------------------------------------------------------------------------------------ checkpoints

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train.train(micro_config(out, max_steps=2)), out


def _load(out, config):
    from longlora_kit import data

    model = train.build_for_training(config, data.load_tokenizer())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return runs.load_checkpoint(out / runs.CHECKPOINT_DIR, model, optimizer, scheduler, config)


@pytest.mark.parametrize("name,damage", [("state.json", "garbage"), ("optimizer.pt", "truncate"),
                                         ("rng.pt", "garbage"), ("trainable.safetensors", "delete")])
def test_a_tampered_checkpoint_is_a_clear_error_naming_the_file(finished_run, tmp_path, name, damage):
    import shutil

    _, out = finished_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    path = copy / runs.CHECKPOINT_DIR / name
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_text("garbage")
    config = micro_config(copy, max_steps=2)
    assert _load(out, config)["step"] == 2  # the untouched original loads
    with pytest.raises(ValueError, match=rf"checkpoint file .*{name} is damaged or missing.*delete"):
        _load(copy, config)


# ----------------------------------------------------------------------------------- fingerprint

def test_content_hash_sees_retrained_weights_and_refuses_broken_files(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": torch.zeros(64, 64)}, str(tmp_path / "model.safetensors"))
    first = runs.content_hash(tmp_path)
    assert runs.content_hash(tmp_path) == first
    save_file({"w": torch.full((64, 64), 1e-3)}, str(tmp_path / "model.safetensors"))  # same header and size
    assert runs.content_hash(tmp_path) != first
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"model.safetensors is truncated .* re-create it"):
        runs.content_hash(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 100)
    with pytest.raises(ValueError, match="is not a safetensors file"):
        runs.content_hash(tmp_path)


def test_an_extension_of_a_retrained_base_is_not_reused(tmp_path):
    base = tmp_path / "base"
    train.train(micro_config(base, max_steps=2))
    ext = micro_config(tmp_path / "ext", base_model=str(base / "model"), max_steps=2)
    first = train.train(ext)
    assert train.train(ext).losses == first.losses  # unchanged base: reused
    train.train(micro_config(base, max_steps=2, lr=1e-2, overwrite=True))  # re-trained in place
    with pytest.raises(ValueError, match="holds another run.*base_model_content"):
        train.train(ext)


# ----------------------------------------------------------------------------------------- claim

def test_a_second_run_into_the_same_folder_refuses_naming_the_first_pid(tmp_path):
    config = micro_config(tmp_path / "run", max_steps=2)
    from longlora_kit import data

    fp = runs.run_fingerprint(config, data.load_tokenizer())
    with runs.claim_out_dir(config, fp):  # a run holding the folder (flock conflicts across open files)
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            train.train(config)
    assert train.train(config).finished  # released when the first run ends


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "run"
    out.mkdir()
    (out / runs.LOCK_FILE).write_text(dead.stdout)  # a lock file left by a killed run
    result = train.train(micro_config(out, max_steps=2))
    assert result.finished and (out / runs.LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_overwrite_replaces_only_kit_marked_folders_and_never_the_base(tmp_path):
    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / "train_config.json").write_text("{}")
    (lookalike / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match=r"holds no kit run \(no .longlora-kit-run marker\)"):
        train.train(micro_config(lookalike, overwrite=True))
    assert (lookalike / "thesis.tex").read_text() == "mine"

    run = tmp_path / "run"
    train.train(micro_config(run, max_steps=2))
    assert (run / runs.MARKER_FILE).is_file()
    with pytest.raises(ValueError, match="lies inside out_dir.*would delete the model"):
        train.train(micro_config(run, base_model=str(run / "model"), max_steps=2, overwrite=True))
    assert (run / "model" / "model.safetensors").is_file()


def test_bad_out_dirs_are_refused_naming_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train.train(micro_config(tmp_path / "file"))
    with pytest.raises(ValueError, match="lies under the file"):
        train.train(micro_config(tmp_path / "file" / "run"))
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(ValueError, match="cannot create out_dir=.*choose a writable folder"):
            train.train(micro_config(tmp_path / "ro" / "run"))


def test_a_damaged_train_config_is_a_clear_error(finished_run):
    _, out = finished_run
    saved = (out / runs.CONFIG_FILE).read_text()
    try:
        (out / runs.CONFIG_FILE).write_text("{garbage")
        with pytest.raises(ValueError, match=r"train_config.json is damaged .* --overwrite"):
            train.train(micro_config(out, max_steps=2))
    finally:
        (out / runs.CONFIG_FILE).write_text(saved)


# --------------------------------------------------------------------------------- kill injection

def test_a_run_killed_before_its_first_checkpoint_does_not_duplicate_rows(tmp_path, monkeypatch):
    straight = train.train(micro_config(tmp_path / "straight"))
    kill_at(monkeypatch, 2 + 3)  # marker, config, then the third metrics row; save_every=0: no checkpoint
    with pytest.raises(Killed):
        train.train(micro_config(tmp_path / "run"))
    monkeypatch.undo()
    assert not (tmp_path / "run" / runs.CHECKPOINT_DIR).exists()
    result = train.train(micro_config(tmp_path / "run"))
    assert [r["step"] for r in runs.read_metrics(tmp_path / "run")] == [1, 2, 3, 4]
    assert result.losses == straight.losses == train.load_result(tmp_path / "run").losses


def test_a_kill_at_every_write_boundary_resumes_exactly(tmp_path, monkeypatch):
    """Kill after each rename/write of the claim, the metrics, two checkpoints and the final save in turn;
    the next run must give the uninterrupted run's losses and weights, one row per step, no leftovers."""
    config = dict(save_every=2)
    events = kill_at(monkeypatch, 0)  # count the boundaries of a clean run
    straight = train.train(micro_config(tmp_path / "straight", **config))
    boundaries = list(events)
    assert "moved aside .checkpoint.old-" in " ".join(boundaries) and boundaries[-1] == "renamed result.json"
    # where each checkpoint becomes durable: its one rename, or (replacing one) the first of its two
    durable = [i for i, e in enumerate(boundaries, 1) if e.startswith("moved aside .checkpoint")
               or (e == "renamed checkpoint" and not boundaries[i - 2].startswith("moved aside"))]
    assert len(durable) == 2  # steps 2 and 4
    ids = torch.randint(0, 100, (1, 12))
    for n in range(1, len(boundaries) + 1):
        saved = 2 * sum(i <= n for i in durable)  # the step the next run must resume from (never restart)
        expected = None if saved == 0 or n == len(boundaries) else saved  # a finished run is reloaded
        out = tmp_path / f"killed-{n}"
        kill_at(monkeypatch, n)
        with pytest.raises(Killed):
            train.train(micro_config(out, **config))
        monkeypatch.undo()
        resumed = train.train(micro_config(out, **config))
        assert resumed.resumed_from == expected, boundaries[n - 1]
        assert resumed.finished and resumed.losses == straight.losses, boundaries[n - 1]
        assert [r["step"] for r in runs.read_metrics(out)] == [1, 2, 3, 4], boundaries[n - 1]
        assert torch.equal(resumed.model(ids).logits, straight.model(ids).logits), boundaries[n - 1]
        assert leftovers(out) == [], boundaries[n - 1]


def test_a_run_writes_nothing_outside_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory, where a stray relative write would land
    train.train(micro_config(tmp_path / "run", max_steps=1))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        [runs.MARKER_FILE, runs.LOCK_FILE, runs.CONFIG_FILE, runs.METRICS_FILE, runs.CHECKPOINT_DIR,
         runs.MODEL_DIR, runs.RESULT_FILE])
