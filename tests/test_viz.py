"""viz: each figure function returns a figure with the traces its notebook shows; explorers re-draw.

Fast (tiny inputs, nothing shown). The real browser (a slider dragged in JupyterLab) is
tests/test_browser.py; here the same code path runs headless.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from longlora_kit import patterns, viz


def names(fig: go.Figure) -> list[str]:
    return [trace.name for trace in fig.data]


# --- shared helpers -----------------------------------------------------------------------------


def test_lines_figure_thins_long_curves_and_keeps_every_curve():
    x = torch.arange(10_000)
    fig = viz.lines_figure({"a": (x, x.double()), "b": (x[:10], x[:10])}, shade=(0, 5, "trained"),
                           dashed=("b",), max_points=1000)
    assert names(fig) == ["a", "b"]
    assert len(fig.data[0].x) == 1000 and list(fig.data[0].x[:2]) == [0, 10]  # every 10th point
    assert len(fig.data[1].x) == 10 and fig.data[1].line.dash == "dash" and fig.data[0].line.dash is None
    assert (fig.layout.shapes[0].x0, fig.layout.shapes[0].x1) == (0, 5)


def test_explorer_redraws_when_a_control_moves():
    import ipywidgets as widgets

    slider = widgets.IntSlider(value=3, min=1, max=9)
    explorer = viz.Explorer(lambda n: viz.lines_figure({"y": (range(n), range(n))}), n=slider)
    assert explorer.draws == 1 and len(explorer.figure.data[0].x) == 3
    slider.value = 7  # what dragging the slider does
    assert explorer.draws == 2 and len(explorer.figure.data[0].x) == 7
    assert slider in explorer.widget.children[0].children and explorer.output in explorer.widget.children


# --- notebook 01 --------------------------------------------------------------------------------


def test_rotation_figure_draws_a_path_and_an_arrow_per_pair():
    fig = viz.rotation_figure(torch.tensor([1.0, 0.1, 0.001]), pairs=[0, 2], position=5)
    assert len(fig.data) == 4 and [t.mode for t in fig.data] == ["markers", "lines+markers"] * 2
    assert len(fig.data[0].x) == 6  # positions 0..5
    assert fig.data[1].x[1] == pytest.approx(math.cos(5.0)) and fig.data[1].y[1] == pytest.approx(math.sin(5.0))


def test_rotation_explorer_moves_the_arrow():
    explorer = viz.rotation_explorer(torch.tensor([1.0, 0.1]), pairs=[0], position=2)
    explorer.controls["position"].value = 3
    assert explorer.figure.data[1].x[1] == pytest.approx(math.cos(3.0)) and "m = 3" in explorer.figure.layout.title.text


def test_wavelength_figure_marks_pairs_that_never_turned():
    fig = viz.wavelength_figure(torch.tensor([6.3, 100.0, 5000.0, 9000.0]), trained_length=4096)
    assert len(fig.data) == 1 and fig.data[0].type == "bar"
    assert list(fig.data[0].marker.color) == ["steelblue", "steelblue", "crimson", "crimson"]
    assert fig.layout.yaxis.type == "log" and fig.layout.shapes[0].y0 == 4096


def test_scales_figure_and_explorer_one_line_per_method_plus_wavelengths():
    wavelengths = torch.tensor([6.3, 60.0, 600.0])

    def scales_for(factor):
        return {"linear": torch.full((3,), float(factor)), "yarn": torch.tensor([1.0, 2.0, float(factor)])}

    fig = viz.scales_figure(scales_for(8), wavelengths, factor=8, trained_length=512)
    assert names(fig) == ["linear", "yarn", "λ_i (right)"] and list(fig.data[0].y) == [8.0] * 3
    explorer = viz.scales_explorer(scales_for, wavelengths, trained_length=512, factor=8)
    explorer.controls["factor"].value = 4
    assert list(explorer.figure.data[0].y) == [4.0] * 3 and "s = 4" in explorer.figure.layout.title.text


# --- notebook 02 --------------------------------------------------------------------------------


def test_group_shift_figure_shows_four_strips_and_the_wrapped_group():
    fig = viz.group_shift_figure(16, 4)
    assert len(fig.data) == 4 and all(t.type == "heatmap" for t in fig.data)
    assert list(fig.data[1].text[0][:4]) == ["2", "3", "4", "5"]  # rolled by -G/2
    assert list(fig.data[3].z[0]) == [3, 3, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]  # 14, 15, 0, 1 together


def test_patterns_figure_overlays_the_two_halves():
    mask = patterns.dense_mask(patterns.s2(8, 4, 32), 4, 32)
    fig = viz.patterns_figure(mask)
    assert len(fig.data) == 3 and all(t.type == "heatmap" for t in fig.data)
    overlay = torch.tensor(fig.data[2].z)
    assert overlay[9, 8] == 3 and overlay[8, 7] == 2 and overlay[3, 2] == 3  # both / shifted only / both
    assert (overlay.triu(1) == 0).all()


def test_pattern_figure_counts_the_leak():
    fig = viz.pattern_figure(32, 0.25, "paper", head=3)
    picture = torch.tensor(fig.data[0].z)
    assert int((picture == 2).sum()) == 16 and "16 leaked pairs" in fig.layout.title.text  # (G/2)² with G = 8
    assert "0 leaked pairs" in viz.pattern_figure(32, 0.25, "leak_free", head=3).layout.title.text


def test_pattern_explorer_redraws_for_each_control():
    explorer = viz.pattern_explorer(heads=4)
    assert explorer.draws == 1 and len(explorer.figure.data[0].z) == 32
    explorer.controls["length"].value = 64
    assert explorer.draws == 2 and len(explorer.figure.data[0].z) == 64 and "L=64" in explorer.figure.layout.title.text
    explorer.controls["variant"].value = "leak_free"
    assert explorer.draws == 3 and "leak_free" in explorer.figure.layout.title.text


def test_receptive_field_figure_one_panel_per_mask_and_layer_count():
    s2 = patterns.dense_mask(patterns.s2(8, 4, 32), 4, 32)
    fig = viz.receptive_field_figure({"S2": s2, "no shift": patterns.dense_mask(patterns.pattern1(8), 4, 32)})
    assert len(fig.data) == 6 and [a.text for a in fig.layout.annotations][:2] == ["S2, 1 layer", "S2, 2 layers"]
    assert torch.equal(torch.tensor(fig.data[1].z).bool(), patterns.receptive_field(s2, 2))


def test_attention_cost_figure_full_vs_s2_is_four_times():
    fig = viz.attention_cost_figure([4096, 8192])
    assert names(fig) == ["full", "full scores", "S2 (G = L/4)", "S2 (G = L/4) scores"]
    full, s2 = fig.data[0].y, fig.data[2].y
    assert full[1] == pytest.approx(35.2, abs=0.1) and all(f / s == pytest.approx(4) for f, s in zip(full, s2))


def test_timing_figure_one_bar_series_per_measurement():
    rows = [dict(length=n, full_ms=2.0 * n, s2_ms=n, groups_ms=0.5 * n, ratio=2.0, ceiling=4.0) for n in (256, 512)]
    fig = viz.timing_figure(rows)
    assert [t.type for t in fig.data] == ["bar"] * 3 and list(fig.data[1].x) == ["256", "512"]
    assert list(fig.data[0].y) == [512.0, 1024.0] and "L=512: 2.00x (4.00x)" in fig.layout.title.text


# --- notebook 03 --------------------------------------------------------------------------------


def test_bars_figure_one_series_per_column():
    frame = pd.DataFrame({"lora r=2": [0.1, 0.0], "full": [0.2, 0.01]}, index=["attention", "norm"])
    fig = viz.bars_figure(frame, "change", "‖ΔW‖ / ‖W‖")
    assert names(fig) == ["lora r=2", "full"] and list(fig.data[1].y) == [0.2, 0.01]
    assert list(fig.data[0].x) == ["attention", "norm"] and fig.layout.barmode == "group"


def test_parameter_budget_figure_keeps_the_ladder_order_and_labels_percentages():
    budget = pd.DataFrame([dict(architecture=a, method=m, trainable=t, trainable_percent=p)
                           for a, scale in (("tiny", 1), ("Llama-2-7B", 1000))
                           for m, t, p in (("full", 100 * scale, 100.0), ("lora", 2 * scale, 2.0),
                                           ("lora+", 10 * scale, 10.0))])
    fig = viz.parameter_budget_figure(budget)
    assert names(fig) == ["full", "lora", "lora+"] and list(fig.data[0].x) == ["tiny", "Llama-2-7B"]
    assert list(fig.data[1].y) == [2, 2000] and list(fig.data[1].text) == ["2%", "2%"]
    assert fig.layout.yaxis.type == "log"
