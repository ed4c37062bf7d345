"""The cache key and the code version: what invalidates a stored run, what does not."""

import os
from dataclasses import replace

import pytest
from experiments_fake import CODE, SETTINGS

from longlora_kit.experiments import cache
from longlora_kit.experiments.claims import RunSpec


def test_the_key_covers_spec_seed_settings_and_code_but_not_the_seed_count():
    spec = RunSpec()
    key = cache.run_key(spec, 0, SETTINGS, CODE)
    assert key == cache.run_key(RunSpec(), 0, dict(SETTINGS), CODE)
    assert key != cache.run_key(replace(spec, lora_r=16), 0, SETTINGS, CODE)
    assert key != cache.run_key(spec, 1, SETTINGS, CODE)
    assert key != cache.run_key(spec, 0, {**SETTINGS, "size": "other"}, CODE)
    assert key != cache.run_key(spec, 0, SETTINGS, "test+1")
    assert key == cache.run_key(spec, 0, {**SETTINGS, "seeds": 5}, CODE)


def test_code_version_hashes_the_files_that_compute_the_numbers():
    version = cache.code_version()
    assert version.startswith("0.1.0+") and version == cache.code_version()
    assert "experiments/toy_runner.py" in cache.CODE_FILES
    assert not any(name.startswith("experiments/") and "toy_runner" not in name for name in cache.CODE_FILES)
    assert cache.code_version(("train.py",)) != cache.code_version(("evaluate.py",))


def test_every_hashed_file_exists():
    # a moved file would count as "<missing>" and silently stop invalidating the cache
    missing = [name for name in cache.CODE_FILES if not (cache.PACKAGE_DIR / name).is_file()]
    assert missing == [], f"CODE_FILES names files that do not exist: {missing}; update it after a move"


def test_records_are_written_atomically_and_checked_on_load(tmp_path):
    with pytest.raises(TypeError, match="RunSpec"):  # records store asdict(spec), never the object
        cache.write_json_atomic(tmp_path / "sub" / "k.json", {"key": "k", "spec": RunSpec()})
    path = cache.write_json_atomic(tmp_path / "sub" / "k.json", {"key": "k", "spec": (1, 2), "at": tmp_path})
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert cache.load_record(path, "k")["at"] == str(tmp_path) and cache.load_record(path, "k")["spec"] == [1, 2]
    assert cache.load_record(path, "other") is None and cache.load_record(tmp_path / "none.json", "k") is None
    path.write_text("{not json")
    assert cache.load_record(path, "k") is None
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # no temporary files left behind


#: Modules the toy runner reaches that are deliberately NOT hashed into the code version: they decide
#: no number of a run (their values that do, like the spec and the settings, are in the key already),
#: or only via the CLI/notebook paths. A module moved into the runner's reach must be added here or to
#: CODE_FILES: a choice, not an accident.
NOT_HASHED = {"longlora_kit", "longlora_kit.architectures", "longlora_kit.experiments.claims",
              "longlora_kit.presets", "longlora_kit.profile", "longlora_kit.utils", "longlora_kit.kernels",
              "longlora_kit.real_model",
              # its numbers reach a run through the settings, which are in the key already
              "longlora_kit.budgets",
              # the run folder's bookkeeping: where files go, how they are written and claimed, not what they hold
              "longlora_kit.runs", "longlora_kit.runs.atomic", "longlora_kit.runs.layout", "longlora_kit.runs.claim",
              "longlora_kit.runs.fingerprint"}


def test_every_module_the_toy_runner_reaches_is_hashed_or_excluded_on_purpose():
    from test_import_graph import import_graph

    graph, reached, todo = import_graph(), set(), ["longlora_kit.experiments.toy_runner"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    hashed = {"longlora_kit." + name.removesuffix(".py").replace("/", ".") for name in cache.CODE_FILES}
    assert reached - hashed == NOT_HASHED, "add the new module to CODE_FILES (or, if it decides no number, NOT_HASHED)"
