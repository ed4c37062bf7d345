"""The figures and the widget of notebooks 04-06 (``viz``, second part) and ``checks.claim``."""

import math

import pytest

from longlora_kit import viz
from longlora_kit.checks import claim
from longlora_kit.experiments.claims import Stats
from longlora_kit.memory import GIB, estimate_memory, table12_comparison
from longlora_kit.presets import get_preset


def test_distance_histogram_puts_the_trained_length_on_the_log2_axis():
    fig = viz.distance_histogram([8, 64, 1024], trained_length=256)
    assert list(fig.data[0].x) == [3.0, 6.0, 10.0]
    assert fig.layout.shapes[0].x0 == 8.0 and "256 tokens" in fig.layout.annotations[0].text


def test_training_loss_figure_is_a_moving_average_per_run():
    fig = viz.training_loss_figure({"a": [5.0, 3.0, 1.0, 1.0], "b": [2.0]}, smooth=2)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].x) == [2, 3, 4] and list(fig.data[0].y) == [4.0, 2.0, 1.0]
    assert list(fig.data[1].y) == []  # shorter than the window: nothing to average yet
    assert list(viz.training_loss_figure({"a": [5.0, 3.0]}).data[0].y) == [5.0, 3.0]


def test_loss_by_position_figure_bins_and_drops_the_ragged_tail():
    torch = pytest.importorskip("torch")
    fig = viz.loss_by_position_figure(torch.tensor([1.0, 1.0, 3.0, 5.0, 7.0]), trained_length=2, bins=2)
    assert list(fig.data[0].x) == [1.0, 3.0] and list(fig.data[0].y) == [1.0, 4.0]
    assert fig.layout.shapes[0].x0 == 2


def _experiment(metric="ppl", paper_base=8.0):
    arms = [{"label": "base", "baseline": None, "paper": {metric: paper_base}, "ours": {metric: Stats.of([2.0, 2.2]).as_dict()}},
            {"label": "other", "baseline": "base", "paper": {}, "ours": {metric: Stats.of([3.0, 3.3]).as_dict()}}]
    return {"title": "t", "metrics": [metric], "arms": arms}


def test_experiment_figure_shows_ratios_to_the_baseline_with_error_bars():
    fig = viz.experiment_figure(_experiment())
    bars, diamonds = fig.data
    assert math.isclose(bars.y[0], 1.0) and math.isclose(bars.y[1], 3.15 / 2.1)
    assert math.isclose(bars.error_y.array[1], Stats.of([3.0, 3.3]).sd / 2.1)
    assert list(diamonds.y) == [1.0, None]  # the paper's numbers, relative to its own baseline
    accuracy = viz.experiment_figure(_experiment("passkey@1x"))  # accuracies: as they are
    assert math.isclose(accuracy.data[0].y[1], 3.15) and accuracy.layout.shapes == ()


def test_memory_figure_stacks_the_estimate_and_says_whether_it_fits():
    fig = viz.memory_figure("llama2-7b", 100_000, "lora+", "s2", 80.0)
    estimate = estimate_memory(get_preset("llama2-7b").llama_config(), 100_000, method="lora+", attention="s2",
                               loss_chunk=2048)
    assert fig.data[0].x[-1] == "100,000 ◀"
    assert math.isclose(sum(t.y[-1] for t in fig.data), estimate.total / GIB)
    assert "100,000 tokens fits" in fig.layout.title.text
    assert "does NOT fit" in viz.memory_figure("llama2-7b", 8192, "full", "full", 80.0).layout.title.text


def test_memory_widget_redraws_for_its_controls():
    pytest.importorskip("ipywidgets")
    box = viz.memory_widget()
    controls, out = box.children
    sliders = [w for column in controls.children for w in column.children]
    assert [w.description for w in sliders] == ["model", "context", "method", "attention", "GPU GiB"]
    assert out.__class__.__name__ == "Output"


def test_table12_figure_draws_every_row_three_ways():
    rows = table12_comparison()
    fig = viz.table12_figure(rows)
    assert [t.name for t in fig.data] == ["paper (ZeRO-2 ×8, per GPU)", "estimate, ZeRO-2 ×8", "estimate, one GPU"]
    assert list(fig.data[1].y) == [r["zero2x8_gb"] for r in rows] and fig.data[0].x[0] == "full 8k"


def test_claim_asserts_where_claimed_and_only_reports_elsewhere(capsys):
    assert claim(True, "holds", profile="workshop") is True
    with pytest.raises(AssertionError, match="must hold"):
        claim(False, "must hold", profile="full")
    assert claim(False, "not yet", profile="smoke") is False  # smoke claims nothing
    assert claim(False, "only in full", profiles=("full",), profile="workshop") is False
    out = capsys.readouterr().out
    assert "✓ holds" in out and "(not claimed in the smoke profile) not yet: does not hold" in out
