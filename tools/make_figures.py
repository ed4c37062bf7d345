"""Regenerate the README's pictures (static PNGs in docs/figures/) from the kit's own functions.

    python tools/make_figures.py                     # every figure -> docs/figures/
    python tools/make_figures.py --only s2_pattern   # one of them
    python tools/make_figures.py --evals runs/extend/evals.json

Each figure is the same plotly figure the notebooks draw, exported with kaleido, which drives a
headless Chrome/Chromium (Debian's ``chromium`` package works: ``apt-get install chromium``).

=========================  ================================================================  ============
figure                     what it shows                                                     from
=========================  ================================================================  ============
s2_pattern                 which keys each query sees under S2-Attn: two head halves, the    ``patterns``
                           second shifted by half a group, against full causal attention
position_interpolation     the RoPE angle of the slowest pair past the trained length:       ``rope``
                           extrapolation leaves the trained range, linear PI stays inside it
perplexity_before_after    perplexity vs evaluation length, base model vs the LongLoRA-      ``evaluate``
                           extended one (read from an evaluation JSON: see ``--evals``)
=========================  ================================================================  ============

The perplexity curve is *measured*, never made up: it is drawn from the JSON that
``longlora_kit.evaluate.save_evals`` writes (``--evals``; default: the newest ``runs/**/eval*.json``).
The numbers used are copied next to the PNG (``perplexity_before_after.json``), so the picture can be
redrawn later without the run, and says where it came from. A figure whose inputs are missing is
skipped with the reason, and the command then exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 900, 420  # small PNGs: the README shows them at page width


class Skip(Exception):
    """A figure's inputs are not available; the message says what is missing and how to get it."""


# --- figures ---------------------------------------------------------------------------------------


def s2_pattern(args):
    """Which keys each query sees: full causal vs the two S2-Attn head halves (and the paper's wrap)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    try:
        from longlora_kit.patterns import causal, dense_mask, s2
    except ImportError as exc:
        raise Skip(f"longlora_kit.patterns is not available ({exc})") from exc

    length, group, heads = 16, 4, 2
    leak_free = dense_mask(s2(group, heads, length, "leak_free"), num_heads=heads, length=length)  # (H, L, L)
    paper = dense_mask(s2(group, heads, length, "paper"), num_heads=heads, length=length)
    panels = {
        "full causal": dense_mask(causal(), num_heads=1, length=length)[0],
        "S2, heads h < H/2: groups of G": leak_free[0],
        "S2, heads h ≥ H/2: shifted by G/2": leak_free[-1],
        "paper's roll: the last group wraps": paper[-1],
    }
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.03)
    for col, grid in enumerate(panels.values(), start=1):
        fig.add_trace(go.Heatmap(z=grid.int().tolist(), colorscale=[[0, "#f2f2f2"], [1, "#1f4e9c"]],
                                 showscale=False, xgap=1, ygap=1, hovertemplate="q %{y}, k %{x}<extra></extra>"),
                      row=1, col=col)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{col}", row=1, col=col, showticklabels=col == 1,
                         title_text="query position" if col == 1 else None)
        fig.update_xaxes(title_text="key position", row=1, col=col)
    fig.update_annotations(font_size=12)
    fig.update_layout(width=1100, height=360, margin=dict(l=60, r=10, t=80, b=40),
                      title=f"S2-Attn at L={length}, group G={group}: each query sees only its group")
    return fig


def position_interpolation(args):
    """RoPE angle m·θ of the slowest rotating pair, for positions up to 4× the trained length."""
    import plotly.graph_objects as go

    from longlora_kit import tiny_config
    from longlora_kit.rope import extend_config, inv_freq

    config = tiny_config()
    trained = config.max_position_embeddings
    target = 4 * trained
    slowest = {
        "RoPE as trained (extrapolates)": inv_freq(config)[0][-1].item(),
        "linear position interpolation ×4": inv_freq(extend_config(config, target, method="linear"))[0][-1].item(),
    }
    positions = list(range(target))
    seen = slowest["RoPE as trained (extrapolates)"] * (trained - 1)  # largest angle met in pre-training
    fig = go.Figure()
    fig.add_hrect(y0=0, y1=seen, fillcolor="#2ca02c", opacity=0.12, line_width=0,
                  annotation_text="angles seen in pre-training", annotation_position="top left")
    for name, theta in slowest.items():
        fig.add_trace(go.Scatter(x=positions, y=[m * theta for m in positions], name=name, mode="lines"))
    fig.add_vline(x=trained, line_dash="dot", annotation_text=f"trained length {trained}")
    fig.update_layout(width=WIDTH, height=HEIGHT, margin=dict(l=60, r=20, t=50, b=50),
                      title="Position interpolation keeps every angle inside the trained range",
                      xaxis_title="position m", yaxis_title="angle m·θ of the slowest pair (rad)",
                      legend=dict(x=0.01, y=0.72))
    return fig


def _find_evals(explicit: Path | None, out: Path) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise Skip(f"--evals {explicit} does not exist")
        return explicit
    runs = sorted((REPO / "runs").glob("**/eval*.json"), key=lambda p: p.stat().st_mtime)
    if runs:
        return runs[-1]
    kept = out / "perplexity_before_after.json"
    if kept.is_file():
        return kept
    raise Skip("no evaluation JSON: run the pipeline (pretrain, extend, eval; see the README) or pass --evals")


def perplexity_before_after(args):
    """Perplexity vs evaluation length for every model in an evaluation JSON (base and extended)."""
    from longlora_kit.viz import perplexity_figure

    source = _find_evals(args.evals, args.out)
    rows = json.loads(source.read_text())
    if isinstance(rows, dict) and "models" in rows:  # our own kept copy
        meta, rows = rows, rows["models"]
    else:
        meta = {"source": str(source.resolve().relative_to(REPO) if source.resolve().is_relative_to(REPO)
                              else source)}
    if not rows or not all("name" in r and "perplexity" in r for r in rows):
        raise Skip(f"{source} is not an evaluation JSON (a list of {{name, perplexity: {{length: ppl}}}})")
    curves = {r["name"]: {int(k): float(v) for k, v in r["perplexity"].items()} for r in rows}
    bad = [f"{n}@{k}" for n, c in curves.items() for k, v in c.items() if not math.isfinite(v) or v <= 0]
    if bad:
        raise Skip(f"{source} holds non-positive or non-finite perplexities: {bad}")
    trained = meta.get("trained_length") or args.trained_length or min(min(c) for c in curves.values())
    fig = perplexity_figure(curves, trained_length=trained)
    fig.update_layout(width=WIDTH, height=HEIGHT, title="Perplexity vs context length, before and after extension",
                      margin=dict(l=60, r=20, t=50, b=50))
    kept = {"source": meta["source"], "trained_length": trained,
            "models": [{"name": n, "perplexity": {str(k): v for k, v in c.items()}} for n, c in curves.items()]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perplexity_before_after.json").write_text(json.dumps(kept, indent=2) + "\n")
    return fig


FIGURES = {
    "s2_pattern": s2_pattern,
    "position_interpolation": position_interpolation,
    "perplexity_before_after": perplexity_before_after,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="output folder")
    parser.add_argument("--only", choices=list(FIGURES), action="append", help="make only these (repeatable)")
    parser.add_argument("--evals", type=Path, help="evaluation JSON (longlora_kit.evaluate.save_evals)")
    parser.add_argument("--trained-length", type=int, help="pre-training length marked on the perplexity plot")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    skipped = []
    for name in args.only or FIGURES:
        try:
            fig = FIGURES[name](args)
        except Skip as reason:
            print(f"figures: SKIPPED {name}: {reason}")
            skipped.append(name)
            continue
        path = args.out / f"{name}.png"
        fig.write_image(path)  # kaleido + chromium; size from the figure's layout
        print(f"figures: wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
              f"({path.stat().st_size // 1024} KiB)")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
