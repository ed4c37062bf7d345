"""tools/make_figures.py: README pictures drawn from the kit's functions and from measured evaluations."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_figures", REPO / "tools" / "make_figures.py")
figures = sys.modules["make_figures"] = importlib.util.module_from_spec(_spec)  # tools/ is not a package
_spec.loader.exec_module(figures)

EVALS = [  # the shape longlora_kit.evaluate.save_evals writes (JSON turns the int lengths into strings)
    {"name": "base", "perplexity": {"256": 20.5, "512": 95.0, "1024": 410.0}, "passkey": {}},
    {"name": "extended", "perplexity": {"256": 21.0, "512": 19.8, "1024": 19.1}, "passkey": {}},
]


def _args(tmp_path, evals=None):
    return argparse.Namespace(out=tmp_path, evals=evals, trained_length=256)


def test_perplexity_figure_draws_exactly_the_measured_numbers_and_keeps_them(tmp_path):
    source = tmp_path / "evals.json"
    source.write_text(json.dumps(EVALS))
    fig = figures.perplexity_before_after(_args(tmp_path, source))
    drawn = {t.name: dict(zip(t.x, t.y)) for t in fig.data}
    assert drawn == {r["name"]: {int(k): v for k, v in r["perplexity"].items()} for r in EVALS}
    kept = json.loads((tmp_path / "perplexity_before_after.json").read_text())
    assert kept["trained_length"] == 256 and [m["name"] for m in kept["models"]] == ["base", "extended"]
    # The kept copy alone redraws the same figure (no run needed later).
    again = figures.perplexity_before_after(_args(tmp_path, tmp_path / "perplexity_before_after.json"))
    assert [list(t.y) for t in again.data] == [list(t.y) for t in fig.data]


@pytest.mark.parametrize(
    "content, message",
    [
        ([{"model": "x"}], "not an evaluation JSON"),
        ([{"name": "x", "perplexity": {"256": float("nan")}}], "non-finite"),
    ],
)
def test_unusable_evaluations_are_skipped_with_the_reason(tmp_path, content, message):
    source = tmp_path / "evals.json"
    source.write_text(json.dumps(content))
    with pytest.raises(figures.Skip, match=message):
        figures.perplexity_before_after(_args(tmp_path, source))
    with pytest.raises(figures.Skip, match="does not exist"):
        figures.perplexity_before_after(_args(tmp_path, tmp_path / "missing.json"))


def test_s2_pattern_panels_are_the_library_masks():
    patterns = pytest.importorskip("longlora_kit.patterns")
    fig = figures.s2_pattern(None)
    z = [t.z for t in fig.data]
    expect = patterns.dense_mask(patterns.s2(4, 2, 16, "leak_free"), num_heads=2, length=16)
    assert [list(map(list, z[1])), list(map(list, z[2]))] == [expect[0].int().tolist(), expect[1].int().tolist()]
    assert z[3][0][15] == 1 and z[2][0][15] == 0  # the paper's roll lets token 0 see token 15; leak-free does not


@pytest.mark.skipif(shutil.which("chromium") is None, reason="kaleido needs chromium (apt-get install chromium)")
def test_png_export_with_kaleido(tmp_path):
    status = figures.main(["--out", str(tmp_path), "--only", "position_interpolation"])
    png = tmp_path / "position_interpolation.png"
    assert status == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
