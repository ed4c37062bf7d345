"""The report and the figure: tables with the paper's numbers, verdicts, provenance, error bars."""

import json
import math

import pytest
from experiments_fake import CALLS, run

from longlora_kit import viz
from longlora_kit.experiments import report
from longlora_kit.experiments.claims import Stats
from longlora_kit.experiments.tables import EXPERIMENTS


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_report_has_tables_paper_numbers_verdicts_and_provenance(tmp_path):
    results = run(tmp_path)
    md, js = report.write_report(results, tmp_path / "out" / "reproduction.md")
    text = md.read_text()
    for experiment in EXPERIMENTS:
        assert f"## {experiment.title}" in text
    for needle in ("11.44", "8.12", "32.81", "| arm |", "ours ÷ baseline", "**Date:**", "**Machine:**",
                   "3 seeds per arm (0, 1, 2)", "**Run time:**", "do not edit by hand", "2·SE"):
        assert needle in text, needle
    n_claims = sum(len(e.claims) for e in EXPERIMENTS)
    assert text.count("- **reproduced**") + text.count("- **not reproduced**") == n_claims
    assert "Smoke profile" not in text
    assert report.load_results(js) == json.loads(json.dumps(results))
    counts = report.tally(results)
    assert sum(counts.values()) == n_claims and f"{counts['reproduced']} reproduced" in text


def test_load_results_names_the_command_when_there_are_none(tmp_path):
    with pytest.raises(ValueError, match="longlora-kit reproduce"):
        report.load_results(tmp_path / "none.json")


def test_a_smoke_report_says_it_claims_nothing(tmp_path):
    results = run(tmp_path, profile="smoke", only=["leak"])
    assert results["claims"] is False
    assert "claim nothing" in report.render_report(results)


def test_table_cells_show_mean_and_spread():
    exp = {"metrics": ["ppl"], "arms": [
        {"label": "base", "baseline": "base", "paper": {"ppl": 8.0}, "ours": {"ppl": Stats.of([2.0, 2.2]).as_dict()}},
        {"label": "other", "baseline": "base", "paper": {"ppl": 8.8}, "ours": {"ppl": Stats.of([3.0, 3.2]).as_dict()}},
    ]}
    lines = report.experiment_table(exp).splitlines()
    assert lines[2] == "| base | 2.100 ± 0.141 | 1.000 | 8.00 | 1.000 |"
    assert lines[3] == "| other | 3.100 ± 0.141 | 1.476 | 8.80 | 1.100 |"


def test_figure_has_error_bars_and_paper_markers(tmp_path):
    results = run(tmp_path, only=["table6", "passkey"])
    fig = viz.experiment_figure(results["experiments"][0])
    bars = [t for t in fig.data if t.type == "bar"]
    markers = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == 2 and len(markers) == 2  # ppl_sparse and ppl, ours and the paper's
    assert all(len(b.error_y.array) == 6 for b in bars)
    assert math.isclose(bars[1].y[0], 1.0) and math.isclose(markers[1].y[0], 1.0)  # S2 is the baseline
    passkey = viz.experiment_figure(results["experiments"][1])
    assert [t.type for t in passkey.data] == ["bar"] * 3  # no published numbers to mark
