"""``longlora-kit reproduce`` and the ``bench`` group on the command line."""

import json
from pathlib import Path

import pytest
from experiments_fake import CALLS

from longlora_kit import cli
from longlora_kit.experiments import report
from longlora_kit.experiments.report import default_report_path


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_cli_only_runs_the_named_experiments(tmp_path, capsys):
    out = tmp_path / "report.md"
    code = cli.main(["reproduce", "--profile", "smoke", "--only", "table1", "leak", "--cache", str(tmp_path),
                     "--out", str(out), "--runner", "experiments_fake:fake_runner", "--no-progress", "--jobs", "1"])
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
    assert default_report_path("full", None, tmp_path) == report.DEFAULT_REPORT
    assert default_report_path("full", ["table1"], tmp_path) == tmp_path / "full" / "reproduction.md"
    assert default_report_path("smoke", None, tmp_path) == tmp_path / "smoke" / "reproduction.md"


def test_defaults_are_relative_to_where_it_runs_not_inside_the_package():
    # `make reproduce` runs from the repo root; an installed package must not write into site-packages
    parser = cli.build_parser()
    args = parser.parse_args(["reproduce"])
    assert not Path(args.cache).is_absolute() and args.cache == str(Path("runs") / "reproduce-cache")
    assert report.DEFAULT_REPORT == Path("docs/reproduction.md") and not report.DEFAULT_RESULTS.is_absolute()


def test_bench_is_a_group_of_benchmarks():
    parser = cli.build_parser()
    bench = next(a for a in parser._subparsers._group_actions[0].choices["bench"]._actions
                 if a.dest == "benchmark")
    assert set(bench.choices) == {"train", "attention", "real"}
