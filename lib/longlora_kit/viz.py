"""Figures and widgets: every plotly figure and ipywidgets explorer the notebooks and tools draw.

Plotting is kept out of the teaching modules and the notebooks, so that ``evaluate``, ``memory`` and a
notebook's cells read as the computation only; a cell says ``viz.perplexity_figure(...)`` and shows the
picture. Each function takes plain results (tensors, dicts, data frames, ``evaluate.PasskeyResult``)
and returns a ``plotly.graph_objects.Figure`` without showing it; an :class:`Explorer` (controls and a
figure that re-draws when they move) shows itself as a cell's last expression.

>>> fig = perplexity_figure({"base": {128: 1.8, 256: 2.4}}, trained_length=128)
>>> fig.layout.xaxis.type, [trace.name for trace in fig.data]
('log', ['base'])
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

# ==================================================================================================
# Notebooks 00-03 (owned by the notebooks 00-03 pass): shared helpers first, then one section per notebook.


class Explorer:
    """ipywidgets controls over a figure that is re-drawn whenever a control moves.

    ``draw(**values)`` returns the figure for the controls' current values (keyword = control name).
    Make the explorer a cell's last expression to show it. ``figure`` is the figure drawn last and
    ``draws`` counts the drawings (the tests read both; the browser test moves a real slider).

    >>> import ipywidgets as widgets
    >>> explorer = Explorer(lambda n: lines_figure({"y": (range(n), range(n))}), n=widgets.IntSlider(3, 1, 9))
    >>> explorer.controls["n"].value = 5
    >>> explorer.draws, len(explorer.figure.data[0].x)
    (2, 5)
    """

    def __init__(self, draw, **controls):
        import ipywidgets as widgets

        self.draw, self.controls, self.output = draw, controls, widgets.Output()
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([row, self.output])
        self.figure, self.draws = None, 0
        for control in controls.values():
            control.observe(self.redraw, names="value")
        self.redraw()

    def redraw(self, *_) -> None:
        self.figure = self.draw(**{name: control.value for name, control in self.controls.items()})
        self.draws += 1
        from IPython import get_ipython

        if get_ipython() is None:  # no kernel (a test, a script): keep the figure, show nothing
            return
        self.output.clear_output(wait=True)
        with self.output:
            self.figure.show()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _slider(value: int, low: int, high: int, step: int = 1, description: str = ""):
    import ipywidgets as widgets

    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             style={"description_width": "initial"}, continuous_update=False)


def lines_figure(curves: dict, title: str = "", xaxis_title: str = "", yaxis_title: str = "",
                 shade: tuple | None = None, dashed: tuple = (), max_points: int = 3000, height: int = 380) -> go.Figure:
    """One line per ``name: (x, y)`` of ``curves``, each thinned to at most ``max_points`` points (keeps
    notebooks small); ``shade=(x0, x1, text)`` marks a range, names in ``dashed`` are dashed.

    >>> fig = lines_figure({"a": (range(10), range(10))}, shade=(0, 4, "trained"), max_points=5)
    >>> [t.name for t in fig.data], len(fig.data[0].x), fig.layout.shapes[0].x1
    (['a'], 5, 4)
    """
    fig = go.Figure()
    for name, (x, y) in curves.items():
        x, y = (v.tolist() if hasattr(v, "tolist") else list(v) for v in (x, y))  # tensors: one conversion
        every = max(1, math.ceil(len(x) / max_points))
        fig.add_scatter(x=x[::every], y=y[::every], name=name, line_width=1.5,
                        line_dash="dash" if name in dashed else None)
    if shade:
        fig.add_vrect(x0=shade[0], x1=shade[1], fillcolor="green", opacity=0.08, annotation_text=shade[2])
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=height)
    return fig


def _heatmap_grid(panels: dict, rows: int, cols: int, title: str, height: int, colorscale="Blues") -> go.Figure:
    """Square heatmaps (query rows, key columns), one subplot per ``title: matrix`` of ``panels``."""
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(panels))
    for i, z in enumerate(panels.values()):
        fig.add_trace(go.Heatmap(z=z.int().tolist(), colorscale=colorscale, showscale=False),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=height, title=title)
    return fig


# --------------------------------------------------------------------------------------------------
# Notebook 01: RoPE and position interpolation


def rotation_figure(frequencies, pairs, position: int) -> go.Figure:
    """The pair vector (1, 0) of each of ``pairs`` rotated to ``position`` (an arrow), and its path so
    far (dots): pair i turns by ``frequencies[i]`` radians per token.

    >>> fig = rotation_figure([1.0, 0.01], pairs=[0, 1], position=3)
    >>> len(fig.data), len(fig.data[0].x)  # a path and an arrow per pair; path over positions 0..3
    (4, 4)
    """
    fig = go.Figure()
    for pair in pairs:
        angles = [m * float(frequencies[pair]) for m in range(position + 1)]
        fig.add_scatter(x=[math.cos(a) for a in angles], y=[math.sin(a) for a in angles], mode="markers",
                        marker_size=4, opacity=0.4, name=f"pair {pair} path (θ={float(frequencies[pair]):.2g})")
        fig.add_scatter(x=[0, math.cos(angles[-1])], y=[0, math.sin(angles[-1])], mode="lines+markers",
                        line_width=3, name=f"pair {pair} at m={position}")
    fig.update_layout(width=560, height=480, title=f"one 2-D pair rotated to position m = {position}",
                      xaxis=dict(range=[-1.2, 1.2]), yaxis=dict(range=[-1.2, 1.2], scaleanchor="x"))
    return fig


def rotation_explorer(frequencies, pairs, position: int = 20, max_position: int = 200) -> Explorer:
    """:func:`rotation_figure` with a position slider."""
    return Explorer(lambda position: rotation_figure(frequencies, pairs, position),
                    position=_slider(position, 0, max_position, description="position m"))


def wavelength_figure(wavelengths, trained_length: int) -> go.Figure:
    """Wavelength ``2π/θ_i`` per pair (log scale); red bars never completed a turn in ``trained_length``.

    >>> fig = wavelength_figure([6.3, 60.0, 6000.0], trained_length=4096)
    >>> list(fig.data[0].marker.color)
    ['steelblue', 'steelblue', 'crimson']
    """
    wavelengths = [float(w) for w in wavelengths]
    fig = go.Figure(go.Bar(x=list(range(len(wavelengths))), y=wavelengths,
                           marker_color=["crimson" if w > trained_length else "steelblue" for w in wavelengths]))
    fig.add_hline(y=trained_length, line_dash="dash", annotation_text=f"trained length L = {trained_length}")
    fig.update_layout(title="wavelength per pair (red: never completed a turn in training)",
                      xaxis_title="pair i", yaxis_title="λ_i (positions)", yaxis_type="log", height=400)
    return fig


def scales_figure(scales: dict, wavelengths, factor: int, trained_length: int) -> go.Figure:
    """Per-pair scale ``θ_i / θ'_i`` of each method (``scales``: name -> (d/2,)), log axis, with the
    wavelengths on a second axis.

    >>> fig = scales_figure({"linear": [4.0, 4.0]}, wavelengths=[6.3, 600.0], factor=4, trained_length=512)
    >>> [t.name for t in fig.data]
    ['linear', 'λ_i (right)']
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    pairs = list(range(len(wavelengths)))
    for method, scale in scales.items():
        fig.add_scatter(x=pairs, y=[float(s) for s in scale], name=method, mode="lines+markers", marker_size=4)
    fig.add_scatter(x=pairs, y=[float(w) for w in wavelengths], name="λ_i (right)",
                    line=dict(dash="dot", color="gray"), secondary_y=True)
    fig.update_yaxes(title_text="scale θ_i / θ'_i", type="log", secondary_y=False)
    fig.update_yaxes(title_text="wavelength λ_i", type="log", secondary_y=True)
    fig.update_layout(title=f"what each method does to each pair, s = {factor}, L = {trained_length}",
                      xaxis_title="pair i (fast → slow)", height=420)
    return fig


def scales_explorer(scales_for, wavelengths, trained_length: int, factor: int = 8) -> Explorer:
    """:func:`scales_figure` with a slider for the factor s; ``scales_for(s)`` gives the scales."""
    return Explorer(lambda factor: scales_figure(scales_for(factor), wavelengths, factor, trained_length),
                    factor=_slider(factor, 2, 32, description="factor s"))


# --------------------------------------------------------------------------------------------------
# Notebook 02: S2-Attn


def group_shift_figure(length: int, group_size: int) -> go.Figure:
    """Algorithm 1's shifted half on ``length`` tokens as four strips (token numbers, coloured by group):
    tokens, rolled by -G/2, reshaped into groups, rolled back.

    >>> fig = group_shift_figure(16, 4)
    >>> len(fig.data), fig.data[3].z[0][:4]  # token 0 and 1 end in the last (wrapped) group
    (4, [3, 3, 0, 0])
    """
    tokens = list(range(length))
    rolled = tokens[group_size // 2:] + tokens[: group_size // 2]
    slot_group = [slot // group_size for slot in range(length)]
    group_of = [slot_group[rolled.index(t)] for t in tokens]
    strips = {"1. tokens, coloured by pattern-1 group": ([t // group_size for t in tokens], tokens),
              "2. roll by -G/2": ([t // group_size for t in rolled], rolled),
              "3. reshape: groups of G (colour = shifted group)": (slot_group, rolled),
              "4. roll back: each token's shifted group": (group_of, tokens)}
    fig = make_subplots(rows=4, cols=1, subplot_titles=list(strips), vertical_spacing=0.12)
    for i, (colour, labels) in enumerate(strips.values(), start=1):
        fig.add_trace(go.Heatmap(z=[colour], text=[[str(t) for t in labels]], texttemplate="%{text}",
                                 colorscale="Viridis", showscale=False, zmin=0, zmax=length // group_size - 1),
                      row=i, col=1)
    fig.update_yaxes(showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=420, title=f"Group shifting on {length} tokens (G = {group_size})")
    return fig


def patterns_figure(s2_mask) -> go.Figure:
    """The S2 mask ``(H, L, L)`` as pattern 1 (the first half of the heads), pattern 2 (the other half)
    and both overlaid (1 = pattern 1, 2 = pattern 2, 3 = both).

    >>> import torch
    >>> fig = patterns_figure(torch.ones(2, 4, 4, dtype=torch.bool).tril())
    >>> len(fig.data), fig.data[2].z[3][0]
    (3, 3)
    """
    half = s2_mask.shape[0] // 2
    overlay = s2_mask[:half].any(0).int() + 2 * s2_mask[half:].any(0).int()
    panels = {f"pattern 1 (heads 0-{half - 1})": s2_mask[0], f"pattern 2 (heads {half}-{s2_mask.shape[0] - 1})":
              s2_mask[-1], "S2 overlaid: 1 = p1, 2 = p2, 3 = both": overlay}
    fig = _heatmap_grid(panels, 1, 3, f"Attention patterns, L = {s2_mask.shape[-1]}", 380, "Viridis")
    fig.update_yaxes(title_text="query", col=1)
    return fig.update_xaxes(title_text="key")


def pattern_figure(length: int, ratio: float, variant: str, head: int, heads: int = 4) -> go.Figure:
    """One head's S2 mask: attended pairs blue, leaked pairs (the key after the query) red."""
    import torch

    from . import patterns
    from .s2attn import group_size_for

    group = group_size_for(length, ratio)
    mask = patterns.dense_mask(patterns.s2(group, heads, length, variant), heads, length)[head].int()
    picture = mask + mask.triu(1)  # 0 not attended, 1 attended, 2 attended from the future (leak)
    fig = go.Figure(go.Heatmap(z=picture.tolist(), zmin=0, zmax=2, showscale=False,
                               colorscale=[[0, "white"], [0.5, "#3b6fb6"], [1, "#d62728"]]))
    fig.update_yaxes(autorange="reversed", title_text="query")
    fig.update_xaxes(title_text="key")
    leaks = int(torch.count_nonzero(picture == 2))
    return fig.update_layout(height=420, width=460, title=f"L={length}, G={group}, {variant}, "
                             f"head {head}: {leaks} leaked pairs")


def pattern_explorer(heads: int = 4) -> Explorer:
    """:func:`pattern_figure` with controls for the length, the group ratio, the variant and the head."""
    import ipywidgets as widgets

    from .patterns import VARIANTS

    return Explorer(
        lambda length, ratio, variant, head: pattern_figure(length, ratio, variant, head, heads),
        length=_slider(32, 16, 128, 16, "sequence length L"),
        ratio=widgets.Dropdown(options=[("1/2", 0.5), ("1/4", 0.25), ("1/8", 0.125)], value=0.25,
                               description="group ratio G/L", style={"description_width": "initial"}),
        variant=widgets.Dropdown(options=list(VARIANTS), value="paper", description="variant"),
        head=_slider(heads - 1, 0, heads - 1, description=f"head (of {heads})"),
    )


def receptive_field_figure(masks: dict, layers=(1, 2, 3)) -> go.Figure:
    """Which tokens (columns) can influence token i (rows) after 1, 2, 3 layers, one row per
    ``name: mask (H, L, L)``.

    >>> import torch
    >>> fig = receptive_field_figure({"causal": torch.ones(1, 4, 4, dtype=torch.bool).tril()}, layers=(1, 2))
    >>> fig.layout.annotations[1].text
    'causal, 2 layers'
    """
    from .patterns import receptive_field

    panels = {f"{name}, {n} layer{'s' * (n > 1)}": receptive_field(mask, n)
              for name, mask in masks.items() for n in layers}
    return _heatmap_grid(panels, len(masks), len(layers), "Which tokens (columns) can influence token i (rows)",
                         280 * len(masks))


def attention_cost_figure(lengths, heads: int = 32, head_dim: int = 128, layers: int = 32) -> go.Figure:
    """Attention forward TFLOPs (Table 11 convention, whole blocks) and score memory per layer, full vs
    S2 (G = L/4), against the sequence length (``memory.attention_cost``)."""
    from .memory import attention_cost

    fig = make_subplots(rows=1, cols=2, subplot_titles=["attention TFLOPs (forward)",
                                                        f"score memory per layer (GB, fp32, {heads} heads)"])
    for name, ratio in (("full", None), ("S2 (G = L/4)", 4)):
        groups = [n // ratio if ratio else None for n in lengths]
        tflops = [attention_cost(n, g, heads=heads, head_dim=head_dim, layers=layers, causal=False)["flops"] / 1e12
                  for n, g in zip(lengths, groups)]
        score_gb = [attention_cost(n, g, heads=heads)["score_bytes_fp32"] / 1e9 for n, g in zip(lengths, groups)]
        fig.add_scatter(x=list(lengths), y=tflops, name=name, row=1, col=1)
        fig.add_scatter(x=list(lengths), y=score_gb, name=f"{name} scores", line_dash="dot", row=1, col=2)
    fig.update_xaxes(type="log", title_text="sequence length L")
    return fig.update_yaxes(type="log").update_layout(height=380)


def timing_figure(rows: list[dict]) -> go.Figure:
    """Bars of ``experiments.bench_attention.attention_benchmark`` rows: full causal, S2 and the groups
    alone (ms, forward + backward), with each length's speed-up (and ceiling) in the title.

    >>> row = dict(length=256, full_ms=2.0, s2_ms=1.0, groups_ms=0.5, ratio=2.0, ceiling=4.0)
    >>> [t.name for t in timing_figure([row]).data]
    ['full causal', 'S2-Attn', 'groups alone (SDPA on pre-gathered groups)']
    """
    x = [str(r["length"]) for r in rows]
    fig = go.Figure()
    for key, name in (("full_ms", "full causal"), ("s2_ms", "S2-Attn"),
                      ("groups_ms", "groups alone (SDPA on pre-gathered groups)")):
        fig.add_bar(x=x, y=[r[key] for r in rows], name=name)
    speedups = ", ".join(f"L={r['length']}: {r['ratio']:.2f}x ({r['ceiling']:.2f}x)" for r in rows)
    return fig.update_layout(barmode="group", height=360, xaxis_title="sequence length L",
                             yaxis_title="ms (fwd + bwd)", title=f"Measured here, S2 speed-up (ceiling): {speedups}")


# --------------------------------------------------------------------------------------------------
# Notebook 03: LoRA+


def bars_figure(frame, title: str, yaxis_title: str, log: bool = False, text=None) -> go.Figure:
    """Grouped bars: one bar series per column of the data frame ``frame`` over its index; ``text``
    (same shape) labels the bars.

    >>> import pandas as pd
    >>> fig = bars_figure(pd.DataFrame({"lora": [1, 0], "full": [2, 3]}, index=["attention", "norm"]), "t", "y")
    >>> [t.name for t in fig.data], list(fig.data[1].x)
    (['lora', 'full'], ['attention', 'norm'])
    """
    fig = go.Figure()
    for column in frame.columns:
        labels = None if text is None else list(text[column])
        fig.add_bar(x=list(frame.index), y=list(frame[column]), name=str(column), text=labels, textposition="outside")
    return fig.update_layout(title=title, yaxis_title=yaxis_title, yaxis_type="log" if log else None,
                             barmode="group", height=420)


def parameter_budget_figure(budget) -> go.Figure:
    """Trainable parameters per architecture and method (``lora.parameter_budget`` rows), log scale,
    each bar labelled with its percentage of the model."""
    trainable = budget.pivot(index="architecture", columns="method", values="trainable")
    percent = budget.pivot(index="architecture", columns="method", values="trainable_percent")
    order = list(dict.fromkeys(budget["architecture"]))  # the ladder's order, small to large
    labels = percent.loc[order].map(lambda p: f"{p:.3g}%")
    return bars_figure(trainable.loc[order], "Trainable parameters (label: % of the model)", "trainable parameters",
                       log=True, text=labels)


# ==================================================================================================
# Notebooks 04-06: evaluation figures


def passkey_heatmaps(results: dict) -> go.Figure:
    """Side-by-side heatmaps (depth × length) of passkey accuracy, one per model.

    ``results`` maps a model's name to its ``evaluate.PasskeyResult`` (``accuracy[depth][length]``).
    """
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=list(results), shared_yaxes=True,
                        horizontal_spacing=0.03)
    for i, result in enumerate(results.values(), start=1):
        fig.add_trace(go.Heatmap(z=result.accuracy, x=[str(n) for n in result.lengths],
                                 y=[f"{d:.2f}" for d in result.depths], zmin=0, zmax=1, colorscale="Viridis",
                                 showscale=i == len(results), text=[[f"{a:.0%}" for a in r] for r in result.accuracy],
                                 texttemplate="%{text}"), row=1, col=i)
        fig.update_xaxes(title_text="prompt length (tokens)", type="category", row=1, col=i)
    fig.update_yaxes(title_text="depth of the key", row=1, col=1)
    fig.update_layout(height=330, margin=dict(l=60, r=20, t=40, b=50))
    return fig


def perplexity_figure(curves: dict[str, dict[int, float]], trained_length: int | None = None) -> go.Figure:
    """Perplexity vs evaluation length, one line per model (log x axis), with the pre-training length
    marked when ``trained_length`` is given."""
    fig = go.Figure()
    lengths = sorted({length for curve in curves.values() for length in curve})
    for name, curve in curves.items():
        fig.add_trace(go.Scatter(x=list(curve), y=list(curve.values()), name=name, mode="lines+markers"))
    if trained_length:  # on a log axis plotly places shapes in data units but annotations in log10 units
        fig.add_vline(x=trained_length, line_dash="dot")
        fig.add_annotation(x=math.log10(trained_length), y=1, yref="paper", text="pre-training length",
                           showarrow=False, xanchor="left", yanchor="bottom")
    fig.update_layout(xaxis_title="evaluation length (tokens)", yaxis_title="perplexity", xaxis_type="log",
                      xaxis_tickvals=lengths, height=350, margin=dict(l=50, r=20, t=30, b=40))
    return fig


# =====================================================================================================
# Notebooks 04-06: training runs, the reproduction, scaling (the figures and the widget those notebooks
# show; each returns a figure or a widget and shows nothing).
# =====================================================================================================

def _compact(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=50, r=20, t=30, b=40))
    return fig


def distance_histogram(distances: list[int], trained_length: int) -> go.Figure:
    """Histogram of how far back (log2 tokens) each answer's previous mention lies, with the trained
    length marked: the answers right of the line need more context than pre-training saw.

    >>> fig = distance_histogram([8, 16, 300], trained_length=128)
    >>> [round(x, 2) for x in fig.data[0].x], fig.layout.shapes[0].x0
    ([3.0, 4.0, 8.23], 7.0)
    """
    fig = go.Figure(go.Histogram(x=[math.log2(d) for d in distances], nbinsx=24))
    fig.add_vline(x=math.log2(trained_length), line_dash="dot", annotation_text=f"{trained_length} tokens")
    fig.update_layout(xaxis_title="log2(distance back to the previous mention, tokens)", yaxis_title="answers")
    return _compact(fig, 280)


def training_loss_figure(losses: dict[str, list[float]], smooth: int = 1) -> go.Figure:
    """Training loss vs step, one line per run (``{label: losses}``), as a moving average of ``smooth``
    steps (the point at step ``s`` averages steps ``s-smooth+1 .. s``).

    >>> fig = training_loss_figure({"run": [4.0, 2.0, 3.0]}, smooth=2)
    >>> list(fig.data[0].x), list(fig.data[0].y)
    ([2, 3], [3.0, 2.5])
    """
    fig = go.Figure()
    for label, values in losses.items():
        averaged = [sum(values[i - smooth + 1 : i + 1]) / smooth for i in range(smooth - 1, len(values))]
        fig.add_trace(go.Scatter(x=list(range(smooth, len(values) + 1)), y=averaged, name=label, mode="lines"))
    fig.update_layout(xaxis_title="step", yaxis_title="training loss (nats/token)")
    return _compact(fig, 350)


def loss_by_position_figure(curve, trained_length: int, bins: int = 16) -> go.Figure:
    """Mean loss per bin of ``bins`` positions along the window (``curve``: the loss at each position,
    a sequence or 1-D tensor), with the trained length marked.

    >>> fig = loss_by_position_figure([1.0, 3.0, 2.0, 2.0, 9.0], trained_length=2, bins=2)
    >>> list(fig.data[0].x), list(fig.data[0].y)
    ([1.0, 3.0], [2.0, 2.0])
    """
    values = [float(v) for v in curve]
    n_bins = len(values) // bins  # the ragged tail is dropped
    binned = [sum(values[i * bins : (i + 1) * bins]) / bins for i in range(n_bins)]
    fig = go.Figure(go.Scatter(x=[(i + 0.5) * bins for i in range(n_bins)], y=binned, mode="lines+markers"))
    fig.add_vline(x=trained_length, line_dash="dot", annotation_text="trained length")
    fig.update_layout(xaxis_title="position in the window", yaxis_title="loss (nats/token)")
    return _compact(fig, 300)


def experiment_figure(experiment: dict) -> go.Figure:
    """One reproduced experiment as bars: our means with ± sd error bars, the paper's values as diamonds.
    Perplexities are shown relative to each arm's baseline arm (so the paper's 7B numbers and ours
    share one axis); accuracies as they are. ``experiment``: one entry of the results'
    ``"experiments"`` (``experiments.execute.run_experiments``, ``experiments.report.load_results``)."""
    from .experiments.claims import higher_is_better

    by_label = {a["label"]: a for a in experiment["arms"]}
    relative = not any(higher_is_better(m) for m in experiment["metrics"])
    fig = go.Figure()
    for i, metric in enumerate(experiment["metrics"]):
        labels, ours, err, paper = [], [], [], []
        for arm in experiment["arms"]:
            base = by_label[arm["baseline"] or arm["label"]] if relative else None
            scale = base["ours"][metric]["mean"] if relative else 1.0
            paper_scale = base["paper"].get(metric) if relative else 1.0
            d, p = arm["ours"][metric], arm["paper"].get(metric)
            labels.append(arm["label"])
            ours.append(d["mean"] / scale)
            err.append(d["sd"] / scale if math.isfinite(d["sd"]) else 0.0)
            paper.append(p / paper_scale if p is not None and paper_scale else None)
        color = ("#4C78A8", "#F58518", "#54A24B")[i % 3]
        fig.add_trace(go.Bar(x=labels, y=ours, name=f"ours: {metric}", marker_color=color,
                             error_y=dict(type="data", array=err, visible=True), offsetgroup=str(i)))
        if any(p is not None for p in paper):
            fig.add_trace(go.Scatter(x=labels, y=paper, name=f"paper: {metric}", mode="markers", offsetgroup=str(i),
                                     marker=dict(symbol="diamond", size=11, color="black", line=dict(color=color, width=2))))
    ytitle = "perplexity ÷ baseline arm's (lower is better)" if relative else "accuracy (higher is better)"
    fig.update_layout(title=experiment["title"], barmode="group", yaxis_title=ytitle, height=420,
                      margin=dict(l=60, r=20, t=50, b=120), legend=dict(orientation="h", y=-0.35))
    if relative:
        fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    return fig


MEMORY_CONTEXTS = (8192, 16384, 32768, 65536, 100_000)
MEMORY_COLORS = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2")


def memory_figure(preset: str = "llama2-7b", context: int = 32768, method: str = "lora+", attention: str = "s2",
                  gpu_gib: float = 80.0, loss_chunk: int | None = 2048) -> go.Figure:
    """Stacked bars of ``memory.estimate_memory`` by component for 8k ... 100k tokens and ``context``
    (marked ◀), the GPU's memory as a dashed line; the title says whether ``context`` fits and the
    longest context that does (``memory.max_context``)."""
    from .memory import COMPONENTS, GIB, estimate_memory, max_context
    from .presets import get_preset

    config = get_preset(preset).llama_config()
    settings = dict(method=method, attention=attention, loss_chunk=loss_chunk)
    contexts = sorted(set(MEMORY_CONTEXTS) | {context})
    estimates = [estimate_memory(config, c, **settings) for c in contexts]
    fig = go.Figure()
    for name, color in zip(COMPONENTS, MEMORY_COLORS):
        fig.add_bar(x=[f"{c:,}" + (" ◀" if c == context else "") for c in contexts],
                    y=[e.components[name] / GIB for e in estimates], name=name, marker_color=color)
    fig.add_hline(y=gpu_gib, line_dash="dash", annotation_text=f"GPU {gpu_gib:g} GiB")
    chosen = estimates[contexts.index(context)]
    verdict = "fits" if chosen.fits(gpu_gib) else "does NOT fit"
    longest = max_context(config, gpu_gib, **settings)
    fig.update_layout(barmode="stack", height=420, yaxis_title="peak memory (GiB)", xaxis_title="context",
                      title=f"{preset}, {method}, {attention}: {context:,} tokens {verdict} "
                            f"({chosen.total / GIB:.1f} GiB); longest that fits: {longest:,}",
                      margin=dict(l=60, r=20, t=60, b=40))
    return fig


def memory_widget():
    """Controls (model, context, method, attention, GPU memory) that redraw :func:`memory_figure`;
    returns the widget box (a notebook cell displays it by ending with it)."""
    import ipywidgets as widgets

    from .presets import PRESET_NAMES

    controls = dict(
        preset=widgets.Dropdown(options=PRESET_NAMES, value="llama2-7b", description="model"),
        context=widgets.IntSlider(value=32768, min=4096, max=131072, step=4096, description="context"),
        method=widgets.Dropdown(options=["full", "lora", "lora+"], value="lora+", description="method"),
        attention=widgets.Dropdown(options=["full", "s2"], value="s2", description="attention"),
        gpu_gib=widgets.FloatSlider(value=80, min=8, max=141, step=1, description="GPU GiB"),
    )
    out = widgets.interactive_output(lambda **chosen: memory_figure(**chosen).show(), controls)
    boxes = widgets.HBox([widgets.VBox(list(controls.values())[:3]), widgets.VBox(list(controls.values())[3:])])
    return widgets.VBox([boxes, out])


def table12_figure(rows: list[dict]) -> go.Figure:
    """Grouped bars of ``memory.table12_comparison()`` rows: the paper's GB per GPU beside our estimate
    for its set-up (ZeRO-2 over 8 GPUs) and for one GPU alone."""
    fig = go.Figure()
    x = [f"{r['setting']} {r['context'] // 1024}k" for r in rows]
    for column, label in [("paper_gb", "paper (ZeRO-2 ×8, per GPU)"), ("zero2x8_gb", "estimate, ZeRO-2 ×8"),
                          ("one_gpu_gb", "estimate, one GPU")]:
        fig.add_bar(x=x, y=[r[column] for r in rows], name=label)
    fig.update_layout(barmode="group", yaxis_title="GB per GPU")
    return _compact(fig, 380)
