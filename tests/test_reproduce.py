"""The reproduction machinery: caching, resume, shared runs, verdicts, report, CLI.

No model trains here: a fake runner (a deterministic function of the spec and the seed) stands in for
the toy runner, which the smoke run of notebook 05 exercises.
"""

import hashlib
import json
import math
from dataclasses import asdict, replace

import pytest

from longlora_kit import cli
from longlora_kit import reproduce as R
from longlora_kit import reproduce_runner as runner_module
from longlora_kit.reproduce import Claim, RunSpec, Stats, verdict

SETTINGS = {"seeds": 3, "size": "fake"}
CODE = "test+0"
CALLS: list[tuple[RunSpec, int]] = []


def _offset(spec: RunSpec) -> float:
    """A stable pseudo-random offset per spec in [0, 1)."""
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).digest()
    return digest[0] / 256


def fake_runner(spec, seed, context):
    """Perplexity 3 + spec offset + a small seed wobble; passkey accuracies from the offset."""
    CALLS.append((spec, seed))
    ppl = 3.0 + _offset(spec) + 0.001 * seed
    metrics = {"ppl": ppl, "ppl_sparse": ppl + 0.1}
    for m in R.PASSKEY_MULTIPLES:
        metrics[f"passkey@{m}x"] = min(1.0, _offset(spec) * m / 4 + 0.01 * seed)
    return metrics


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def run(tmp_path, **kw):
    kw = {"profile": "full", "runner": fake_runner, "cache_dir": tmp_path, "settings": SETTINGS, "code": CODE,
          "progress": False, **kw}
    return R.run_experiments(**kw)


def distinct_runs(experiments=R.EXPERIMENTS, seeds=3) -> int:
    return len({(arm.spec, s) for e in experiments for arm in e.arms for s in range(seeds)})


# ------------------------------------------------------------------------------- experiment definitions

def test_experiments_cover_the_issue():
    keys = [e.key for e in R.EXPERIMENTS]
    assert keys == ["table1", "table2", "table6", "table7", "leak", "passkey"]
    table6 = R.select(["table6"])[0]
    assert {a.spec.attention_pattern for a in table6.arms} == {"s2", "pattern1", "pattern2", "dilated", "block_sparse",
                                                                "stride_sparse"}
    assert all(a.spec.eval_sparse for a in table6.arms) and table6.metrics == ("ppl_sparse", "ppl")
    table7 = R.select(["table7"])[0]
    assert sorted(a.spec.group_size_ratio for a in table7.arms if a.spec.attention != "sdpa") == [0.125, 0.25, 0.5]
    table1 = R.select(["table1"])[0]
    assert {a.spec.extension for a in table1.arms} == {2, 4} and {a.spec.method for a in table1.arms} == {"full"}
    passkey = R.select(["passkey"])[0]
    assert [a.spec.train for a in passkey.arms] == [False, False, False, True, True]
    assert [a.spec.extension for a in passkey.arms] == [1, 4, 4, 4, 4]
    # one interpolation for every fine-tuned arm; linear PI only as a no-training baseline
    assert [a.spec.rope_method for a in passkey.arms] == ["yarn", "linear", "yarn", "yarn", "yarn"]
    assert {a.spec.rope_method for e in R.EXPERIMENTS for a in e.arms if a.spec.train} == {"yarn"}


def test_every_claim_refers_to_a_measured_arm_and_the_paper_numbers_are_stored():
    for experiment in R.EXPERIMENTS:
        labels = [a.label for a in experiment.arms]
        assert len(labels) == len(set(labels)), experiment.key
        for claim in experiment.claims:
            for label, metric in (claim.a, claim.b):
                assert label in labels and metric in experiment.metrics, (experiment.key, claim.text)
        if experiment.key != "passkey":  # the passkey result is a figure in the paper, no table
            assert all(a.paper for a in experiment.arms), experiment.key
    assert R.select(["table2"])[0].arm("LoRA r=8").paper["ppl"] == 11.44


def test_shared_runs_are_run_once(tmp_path):
    results = run(tmp_path)
    total = sum(len(e.arms) * 3 for e in R.EXPERIMENTS)
    assert results["runs"]["ran"] == len(CALLS) == distinct_runs() < total
    assert len(set(CALLS)) == len(CALLS)
    # Table 1's S2 arm at 4x is Table 7's G = 1/4 arm: identical numbers, one run
    t1 = {a["label"]: a for a in results["experiments"][0]["arms"]}
    t7 = {a["label"]: a for a in results["experiments"][3]["arms"]}
    assert t1["S2-Attn, 4×"]["ours"]["ppl"]["values"] == t7["G = 1/4"]["ours"]["ppl"]["values"]


# ---------------------------------------------------------------------------------------- the cache

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


def test_the_key_covers_spec_seed_settings_and_code_but_not_the_seed_count():
    spec = RunSpec()
    key = R.run_key(spec, 0, SETTINGS, CODE)
    assert key == R.run_key(RunSpec(), 0, dict(SETTINGS), CODE)
    assert key != R.run_key(replace(spec, lora_r=16), 0, SETTINGS, CODE)
    assert key != R.run_key(spec, 1, SETTINGS, CODE)
    assert key != R.run_key(spec, 0, {**SETTINGS, "size": "other"}, CODE)
    assert key != R.run_key(spec, 0, SETTINGS, "test+1")
    assert key == R.run_key(spec, 0, {**SETTINGS, "seeds": 5}, CODE)


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


def test_code_version_hashes_the_files_that_compute_the_numbers(tmp_path):
    version = R.code_version()
    assert version.startswith("0.1.0+") and version == R.code_version()
    assert "reproduce_runner.py" in R.CODE_FILES and "reproduce.py" not in R.CODE_FILES
    assert R.code_version(("train.py",)) != R.code_version(("evaluate.py",))


def test_runs_that_share_a_model_go_to_one_worker_in_order():
    passkey, table2 = R.select(["passkey"])[0], R.select(["table2"])[0]
    longlora, plus = passkey.arm("LongLoRA (LoRA+ S2, 4×)").spec, table2.arm("LoRA+ (embed + norm)").spec
    base = passkey.arm("base model (no interpolation)").spec
    pending = [("k1", plus, 0, "t2"), ("k2", base, 0, "pk"), ("k3", longlora, 0, "pk"), ("k4", plus, 1, "t2")]
    tasks = R.group_tasks(pending, runner_module.share_key)
    assert [[job[0] for job in task] for task in tasks] == [["k1", "k3"], ["k2"], ["k4"]]
    assert [[job[0] for job in task] for task in R.group_tasks(pending)] == [["k1"], ["k2"], ["k3"], ["k4"]]


def test_runner_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="returned no"):
        run(tmp_path, only=["leak"], runner=lambda spec, seed, ctx: {"loss": 1.0})
    with pytest.raises(ValueError, match="seeds"):
        run(tmp_path, settings={"seeds": 0})
    with pytest.raises(ValueError, match="jobs"):
        run(tmp_path, jobs=0)
    with pytest.raises(ValueError, match="no such experiment.*table1"):
        R.select(["table3"])
    with pytest.raises(ValueError, match="module:function"):
        R.resolve_runner("no_colon_here")


# ----------------------------------------------------------------------------------------- verdicts

def claim(kind, metric="ppl", margin=R.CLOSE_MARGIN):
    return Claim(kind, ("A", metric), ("B", metric), f"A {kind} B", margin)


@pytest.mark.parametrize("a, b, outcome", [
    ([3.00, 3.01, 3.02], [3.50, 3.51, 3.52], "reproduced"),      # clearly lower perplexity
    ([3.00, 3.40, 3.20], [3.10, 3.50, 3.30], "not reproduced"),  # lower on average, within the noise
    ([3.50, 3.51, 3.52], [3.00, 3.01, 3.02], "not reproduced"),  # the opposite ordering
    ([3.0, 3.0, 3.0], [3.0, 3.0, 3.0], "not reproduced"),        # a tie is no win
])
def test_better(a, b, outcome):
    assert verdict(claim("better"), Stats.of(a), Stats.of(b))["outcome"] == outcome


def test_better_uses_two_standard_errors():
    # gain 0.1; sd 0.1 each, n = 3: SE = sqrt(2 * 0.01 / 3) = 0.0816; 2 SE = 0.163 > 0.1
    a, b = Stats.of([2.9, 3.0, 3.1]), Stats.of([3.0, 3.1, 3.2])
    v = verdict(claim("better"), a, b)
    assert math.isclose(v["se"], math.sqrt(2 * 0.01 / 3)) and math.isclose(v["gain"], 0.1)
    assert v["outcome"] == "not reproduced"
    assert verdict(claim("better"), a, b, k=1.0)["outcome"] == "reproduced"  # 1 SE = 0.082 < 0.1


@pytest.mark.parametrize("a, b, outcome", [
    ([3.00, 3.01, 3.02], [3.01, 3.02, 3.00], "reproduced"),      # same within 2%
    ([3.20, 3.21, 3.22], [3.00, 3.01, 3.02], "not reproduced"),  # 6.6% apart
    ([2.8, 3.2, 3.0], [3.0, 3.0, 3.0], "not reproduced"),        # equal means, too noisy to show closeness
])
def test_close(a, b, outcome):
    assert verdict(claim("close"), Stats.of(a), Stats.of(b))["outcome"] == outcome


@pytest.mark.parametrize("a, b, outcome", [
    ([3.30, 3.31, 3.32], [3.00, 3.01, 3.02], "reproduced"),      # a is worse: it does not beat b
    ([3.00, 3.01, 3.02], [3.01, 3.00, 3.02], "reproduced"),      # a ties b
    ([2.50, 2.51, 2.52], [3.00, 3.01, 3.02], "not reproduced"),  # a beats b by 17%
])
def test_not_better(a, b, outcome):
    assert verdict(claim("not_better"), Stats.of(a), Stats.of(b))["outcome"] == outcome


def test_accuracy_is_higher_is_better():
    high, low = Stats.of([0.9, 0.95, 1.0]), Stats.of([0.0, 0.05, 0.0])
    assert verdict(claim("better", "passkey@4x"), high, low)["outcome"] == "reproduced"
    assert verdict(claim("better", "passkey@4x"), low, high)["outcome"] == "not reproduced"
    assert verdict(claim("better", "ppl"), high, low)["outcome"] == "not reproduced"  # lower ppl wins


def test_one_seed_is_undecided_and_mixed_directions_are_refused():
    assert verdict(claim("better"), Stats.of([3.0]), Stats.of([4.0]))["outcome"] == "undecided"
    assert verdict(claim("better"), Stats.of([3.0, math.nan]), Stats.of([4.0, 4.1]))["outcome"] == "undecided"
    with pytest.raises(ValueError, match="opposite"):
        verdict(Claim("better", ("A", "ppl"), ("B", "passkey@4x"), "x"), Stats.of([1, 2]), Stats.of([1, 2]))
    with pytest.raises(ValueError, match="claim kind"):
        Claim("roughly", ("A", "ppl"), ("B", "ppl"), "x")


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


# ------------------------------------------------------------------------------------------- report

def test_report_has_tables_paper_numbers_verdicts_and_provenance(tmp_path):
    results = run(tmp_path)
    md, js = R.write_report(results, tmp_path / "out" / "reproduction.md")
    text = md.read_text()
    for experiment in R.EXPERIMENTS:
        assert f"## {experiment.title}" in text
    for needle in ("11.44", "8.12", "32.81", "| arm |", "ours ÷ baseline", "**Date:**", "**Machine:**",
                   "3 seeds per arm (0, 1, 2)", "**Run time:**", "do not edit by hand", "2·SE"):
        assert needle in text, needle
    n_claims = sum(len(e.claims) for e in R.EXPERIMENTS)
    assert text.count("- **reproduced**") + text.count("- **not reproduced**") == n_claims
    assert "Smoke profile" not in text
    assert R.load_results(js) == json.loads(json.dumps(results))
    counts = R.tally(results)
    assert sum(counts.values()) == n_claims and f"{counts['reproduced']} reproduced" in text


def test_a_smoke_report_says_it_claims_nothing(tmp_path):
    results = run(tmp_path, profile="smoke", only=["leak"])
    assert results["claims"] is False
    assert "claim nothing" in R.render_report(results)


def test_table_cells_show_mean_and_spread():
    exp = {"metrics": ["ppl"], "arms": [
        {"label": "base", "baseline": "base", "paper": {"ppl": 8.0}, "ours": {"ppl": Stats.of([2.0, 2.2]).as_dict()}},
        {"label": "other", "baseline": "base", "paper": {"ppl": 8.8}, "ours": {"ppl": Stats.of([3.0, 3.2]).as_dict()}},
    ]}
    lines = R.experiment_table(exp).splitlines()
    assert lines[2] == "| base | 2.100 ± 0.141 | 1.000 | 8.00 | 1.000 |"
    assert lines[3] == "| other | 3.100 ± 0.141 | 1.476 | 8.80 | 1.100 |"


def test_figure_has_error_bars_and_paper_markers(tmp_path):
    results = run(tmp_path, only=["table6", "passkey"])
    fig = R.figure(results["experiments"][0])
    bars = [t for t in fig.data if t.type == "bar"]
    markers = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == 2 and len(markers) == 2  # ppl_sparse and ppl, ours and the paper's
    assert all(len(b.error_y.array) == 6 for b in bars)
    assert math.isclose(bars[1].y[0], 1.0) and math.isclose(markers[1].y[0], 1.0)  # S2 is the baseline
    passkey = R.figure(results["experiments"][1])
    assert [t.type for t in passkey.data] == ["bar"] * 3  # no published numbers to mark


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_only_runs_the_named_experiments(tmp_path, capsys):
    out = tmp_path / "report.md"
    code = cli.main(["reproduce", "--profile", "smoke", "--only", "table1", "leak", "--cache", str(tmp_path),
                     "--out", str(out), "--runner", "test_reproduce:fake_runner", "--no-progress", "--jobs", "1"])
    assert code == 0
    text = out.read_text()
    assert "## Table 1" in text and "## Table 8" in text and "## Table 2" not in text
    assert json.loads(out.with_suffix(".json").read_text())["profile"] == "smoke"
    printed = capsys.readouterr().out
    assert "claim nothing" in printed and str(out) in printed
    assert {spec.method for spec, _ in CALLS} == {"full"}  # tables 1 and 8 fine-tune fully, nothing else ran


def test_cli_rejects_unknown_tables(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--only", "table3"])
    assert "invalid choice" in capsys.readouterr().err


def test_default_report_path_never_overwrites_the_committed_report_from_a_partial_run(tmp_path):
    assert R.default_report_path("full", None, tmp_path) == R.DEFAULT_REPORT
    assert R.default_report_path("full", ["table1"], tmp_path) == tmp_path / "full" / "reproduction.md"
    assert R.default_report_path("smoke", None, tmp_path) == tmp_path / "smoke" / "reproduction.md"


# ------------------------------------------------------------------------- the toy runner's plumbing

def test_profiles_define_every_setting_and_smoke_has_a_spread():
    names = {frozenset(runner_module.settings_for(p)) for p in ("smoke", "workshop", "full")}
    assert len(names) == 1
    assert runner_module.settings_for("smoke")["seeds"] >= 2 and runner_module.settings_for("full")["seeds"] >= 3


def test_the_base_model_reads_keys_within_its_window_at_a_constant_rate(tmp_path):
    # what issue #6 found a 4-layer tiny Llama needs to learn the copy (train._tiny_recipe)
    settings = runner_module.settings_for("full")
    config = runner_module.pretrain_config(settings, tmp_path, CODE)
    assert config.seq_len == config.max_distance == settings["base_length"] == settings["model"]["max_position_embeddings"]
    assert config.lr_schedule == "constant" and (config.method, config.attention) == ("full", "sdpa")


def test_finetune_configs_follow_the_spec(tmp_path):
    settings = runner_module.settings_for("full")
    make = lambda spec, seed=0: runner_module.finetune_config(spec, seed, settings, tmp_path / "base", tmp_path, CODE)
    table6 = R.select(["table6"])[0]
    dilated = make(table6.arm("dilated").spec)
    assert (dilated.seq_len, dilated.target_length) == (4 * settings["base_length"],) * 2
    assert (dilated.method, dilated.attention, dilated.attention_pattern) == ("lora+", "s2_attn", "dilated")
    full_2x = make(R.select(["table1"])[0].arm("full attention, 2×").spec)
    assert (full_2x.seq_len, full_2x.method, full_2x.attention, full_2x.attention_pattern) == (
        2 * settings["base_length"], "full", "sdpa", None)
    eighth = make(R.select(["table7"])[0].arm("G = 1/8").spec)
    assert eighth.group_size_ratio == 0.125 and eighth.lr == full_2x.lr  # one learning rate for every arm
    # one fine-tuning corpus (gaps up to 4x L0) and one interpolation for every arm
    assert dilated.max_distance == full_2x.max_distance == settings["finetune_max_distance"] == 4 * settings["base_length"]
    assert dilated.rope_method == full_2x.rope_method == "yarn"
    # a passkey arm reuses the model of the arm it measures again; another seed trains anew
    longlora = R.select(["passkey"])[0].arm("LongLoRA (LoRA+ S2, 4×)").spec
    table2_plus = R.select(["table2"])[0].arm("LoRA+ (embed + norm)").spec
    assert make(longlora).out_dir == make(table2_plus).out_dir != make(table2_plus, seed=1).out_dir
    assert runner_module.share_key(longlora, 0) == runner_module.share_key(table2_plus, 0)
    assert runner_module.share_key(longlora, 0) != runner_module.share_key(table2_plus, 1)
