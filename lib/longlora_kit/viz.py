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
