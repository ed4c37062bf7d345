"""Running the experiments with a fake runner: shared runs once, the cache, resume, tasks, errors."""

import json

import pytest
from experiments_fake import CALLS, SETTINGS, fake_runner, run

from longlora_kit.experiments import execute
from longlora_kit.experiments.tables import EXPERIMENTS, select
from longlora_kit.experiments.toy_runner import ToyRunner


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def distinct_runs(experiments=EXPERIMENTS, seeds=3) -> int:
    return len({(arm.spec, s) for e in experiments for arm in e.arms for s in range(seeds)})


def test_shared_runs_are_run_once(tmp_path):
    results = run(tmp_path)
    total = sum(len(e.arms) * 3 for e in EXPERIMENTS)
    assert results["runs"]["ran"] == len(CALLS) == distinct_runs() < total
    assert len(set(CALLS)) == len(CALLS)
    # Table 1's S2 arm at 4x is Table 7's G = 1/4 arm: identical numbers, one run
    t1 = {a["label"]: a for a in results["experiments"][0]["arms"]}
    t7 = {a["label"]: a for a in results["experiments"][3]["arms"]}
    assert t1["S2-Attn, 4×"]["ours"]["ppl"]["values"] == t7["G = 1/4"]["ours"]["ppl"]["values"]


def test_rerun_is_served_from_the_cache(tmp_path):
    first = run(tmp_path)
    CALLS.clear()
    second = run(tmp_path)
    assert CALLS == []
    assert second["runs"] == {"total": first["runs"]["total"], "ran": 0, "cached": first["runs"]["total"]}
    assert second["experiments"] == first["experiments"]
    assert len(list((tmp_path / "full").glob("*.json"))) == first["runs"]["total"]
    assert not list((tmp_path / "full").glob(".*"))  # no temporary files left behind


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    def dies_after_five(spec, seed, context):
        if len(CALLS) == 5:
            raise Interrupt("killed")
        return fake_runner(spec, seed, context)

    with pytest.raises(Interrupt):
        run(tmp_path, runner=dies_after_five)
    assert len(list((tmp_path / "full").glob("*.json"))) == 5
    CALLS.clear()
    resumed = run(tmp_path)
    assert resumed["runs"]["cached"] == 5 and len(CALLS) == distinct_runs() - 5
    CALLS.clear()
    assert run(tmp_path)["experiments"] == resumed["experiments"] and CALLS == []


def test_a_corrupt_or_foreign_cache_file_is_recomputed(tmp_path):
    run(tmp_path, only=["leak"])
    files = sorted((tmp_path / "full").glob("*.json"))
    files[0].write_text("{not json")
    record = json.loads(files[1].read_text())
    files[1].write_text(json.dumps({**record, "key": "someone-else"}))
    CALLS.clear()
    assert run(tmp_path, only=["leak"])["runs"]["ran"] == 2 and len(CALLS) == 2


def test_more_seeds_reuse_the_runs_already_made(tmp_path):
    run(tmp_path, only=["leak"], settings={**SETTINGS, "seeds": 2})
    CALLS.clear()
    results = run(tmp_path, only=["leak"])
    assert {seed for _, seed in CALLS} == {2} and results["runs"]["cached"] == 6
    assert all(a["ours"]["ppl"]["n"] == 3 for a in results["experiments"][0]["arms"])


def test_a_code_change_invalidates_the_cache(tmp_path):
    run(tmp_path, only=["leak"])
    CALLS.clear()
    run(tmp_path, only=["leak"], code="test+1")
    assert len(CALLS) == 9


def test_prepare_runs_once_before_the_runs_and_not_when_all_are_cached(tmp_path):
    events = []

    class Recording:
        def prepare(self, context):
            events.append("prepare")

        def run(self, spec, seed, context):
            events.append("run")
            return fake_runner(spec, seed, context)

        def share_key(self, spec, seed):
            return None

    run(tmp_path, only=["leak"], runner=Recording())
    assert events == ["prepare"] + ["run"] * 9
    events.clear()
    run(tmp_path, only=["leak"], runner=Recording())
    assert events == []


def test_runs_that_share_a_model_go_to_one_worker_in_order():
    passkey, table2 = select(["passkey"])[0], select(["table2"])[0]
    longlora, plus = passkey.arm("LongLoRA (LoRA+ S2, 4×)").spec, table2.arm("LoRA+ (embed + norm)").spec
    base = passkey.arm("base model (no interpolation)").spec
    pending = [("k1", plus, 0, "t2"), ("k2", base, 0, "pk"), ("k3", longlora, 0, "pk"), ("k4", plus, 1, "t2")]
    tasks = execute.group_tasks(pending, ToyRunner().share_key)
    assert [[job[0] for job in task] for task in tasks] == [["k1", "k3"], ["k2"], ["k4"]]
    assert [[job[0] for job in task] for task in execute.group_tasks(pending)] == [["k1"], ["k2"], ["k3"], ["k4"]]
    no_sharing = execute.group_tasks(pending, lambda spec, seed: None)
    assert [[job[0] for job in task] for task in no_sharing] == [["k1"], ["k2"], ["k3"], ["k4"]]


def test_the_default_runner_is_the_toy_runner_and_strings_are_imported():
    assert isinstance(execute.resolve_runner(None), ToyRunner)
    assert execute.resolve_runner("experiments_fake:fake_runner").function is fake_runner


def test_runner_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="returned no"):
        run(tmp_path, only=["leak"], runner=lambda spec, seed, ctx: {"loss": 1.0})
    with pytest.raises(ValueError, match="seeds"):
        run(tmp_path, settings={"seeds": 0})
    with pytest.raises(ValueError, match="jobs"):
        run(tmp_path, jobs=0)
    with pytest.raises(ValueError, match="module:function"):
        execute.resolve_runner("no_colon_here")


def test_verdicts_follow_the_numbers_not_the_claims(tmp_path):
    """The same claim flips when the runner's numbers flip: nothing is decided in advance."""
    def lora_plus_wins(spec, seed, context):
        return {"ppl": (3.0 if spec.method in ("lora+", "full") else 4.0) + 0.01 * seed}

    def lora_plus_loses(spec, seed, context):
        return {"ppl": (4.0 if spec.method == "lora+" else 3.0) + 0.01 * seed}

    def outcome(results):
        claims = results["experiments"][0]["claims"]
        return next(c["outcome"] for c in claims if c["text"].startswith("trainable embeddings + norms"))

    assert outcome(run(tmp_path / "a", only=["table2"], runner=lora_plus_wins)) == "reproduced"
    assert outcome(run(tmp_path / "b", only=["table2"], runner=lora_plus_loses)) == "not reproduced"
