"""Figures: every plotly figure (and, from wave 2, every widget) the notebooks and tools draw.

Plotting is kept out of the teaching modules so that ``evaluate``, ``memory`` and friends read as
the computation only; a notebook cell says ``viz.perplexity_figure(...)`` and shows the picture.
Each function takes plain results (dicts, ``evaluate.PasskeyResult``) and returns a
``plotly.graph_objects.Figure`` without showing it.

>>> fig = perplexity_figure({"base": {128: 1.8, 256: 2.4}}, trained_length=128)
>>> fig.layout.xaxis.type, [trace.name for trace in fig.data]
('log', ['base'])
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots


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
