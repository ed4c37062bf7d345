"""tools/build_book.py: executed notebooks -> offline HTML pages with live plotly figures, plus an index."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from plotly.offline import get_plotlyjs

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_book", REPO / "tools" / "build_book.py")
book = sys.modules["build_book"] = importlib.util.module_from_spec(_spec)  # tools/ is not a package
_spec.loader.exec_module(book)

PLOTLYJS_HEAD = get_plotlyjs()[:120]  # the bundle's licence header + UMD opening: one per inlined copy
HEATMAP = {"data": [{"type": "heatmap", "z": [[0, 1], [1, 0]]}], "layout": {"title": {"text": "t"}}}


def _newplot_traces(page: str) -> list[list[dict]]:
    """The data array of every Plotly.newPlot call in a page (parsed back from the JSON it embeds)."""
    decoder = json.JSONDecoder()
    calls = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, _ = decoder.raw_decode(page, match.end())
        calls.append(data)
    return calls


def _widget_state(slider_value=3):
    """nbclient-style widget state: VBox(IntSlider, Output(holding one plotly figure))."""
    return {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "IntSliderModel",
                   "state": {"description": "shift", "min": 0, "max": 8, "step": 1, "value": slider_value}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {book.PLOTLY_MIME: HEATMAP}}]}},
    }  # fmt: skip


def test_plotly_to_html_is_a_div_and_a_newplot_call_without_plotlyjs():
    snippet = book.plotly_to_html(HEATMAP)
    assert snippet.count('class="plotly-graph-div"') == 1
    assert _newplot_traces(snippet) == [HEATMAP["data"]]
    assert PLOTLYJS_HEAD not in snippet


def test_widgets_become_their_final_state():
    outputs = book.widget_outputs("box", _widget_state(slider_value=3))
    assert [list(o["data"]) for o in outputs] == [["text/html"], [book.PLOTLY_MIME]]
    slider_html = outputs[0]["data"]["text/html"]
    assert 'type="range"' in slider_html and 'value="3"' in slider_html and "disabled" in slider_html
    assert outputs[1]["data"][book.PLOTLY_MIME] == HEATMAP
    dropdown = {"model_name": "DropdownModel", "state": {"description": "variant", "index": 1,
                                                         "_options_labels": ["leak_free", "paper"]}}
    assert "<option>paper</option>" in book.widget_outputs("d", {"d": dropdown})[0]["data"]["text/html"]
    missing = book.widget_outputs("not-stored", {})
    assert "interactive in JupyterLab" in missing[0]["data"]["text/html"]
    cyclic = {"a": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_a"]}}}
    assert len(book.widget_outputs("a", cyclic)) == 1  # a box containing itself does not recurse forever


def test_make_static_converts_figures_including_those_inside_widgets():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("fig.show()", outputs=[
            nbformat.v4.new_output("display_data", data={book.PLOTLY_MIME: HEATMAP, "text/plain": "Figure"})]),
        nbformat.v4.new_code_cell("display(box)", outputs=[
            nbformat.v4.new_output("display_data", data={book.WIDGET_VIEW_MIME: {"model_id": "box"}})]),
    ]  # fmt: skip
    nb.metadata["widgets"] = {book.WIDGET_STATE_KEY: {"state": _widget_state()}}
    assert book.make_static(nb) == 2
    assert "widgets" not in nb.metadata  # the page must not load the widget manager from a CDN
    datas = [o["data"] for cell in nb.cells for o in cell.outputs]
    assert all(set(d) == {"text/html"} for d in datas)
    assert sum('class="plotly-graph-div"' in d["text/html"] for d in datas) == 2


def test_bad_input_is_a_clear_value_error(tmp_path):
    with pytest.raises(ValueError, match="profile='huge'"):
        book.build_book([REPO / "notebooks" / "00_welcome.ipynb"], tmp_path, "huge")
    with pytest.raises(ValueError, match="notebooks is empty"):
        book.build_book([], tmp_path, "smoke")
    with pytest.raises(ValueError, match="neither a notebook nor a folder"):
        book.find_notebooks([tmp_path / "missing.ipynb"])


PLOT_NOTEBOOK = [
    "import plotly.io as pio\npio.renderers.default = 'plotly_mimetype'  # as setup_notebook() pins it",
    "import ipywidgets as widgets\nimport plotly.graph_objects as go\nfrom IPython.display import display\n"
    "def figure(k):\n    return go.Figure(go.Heatmap(z=[[k, 0], [0, k]]))\n"
    "figure(1).show()",
    "slider = widgets.IntSlider(value=2, min=0, max=5, description='k')\nout = widgets.Output()\n"
    "with out:\n    figure(slider.value).show()\ndisplay(widgets.VBox([slider, out]))",
]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """Notebook 00, a notebook with a figure and a slider, and a failing notebook, built in smoke profile."""
    folder = tmp_path_factory.mktemp("nbs")
    plots = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Plots\n\ntext")]
                                     + [nbformat.v4.new_code_cell(src) for src in PLOT_NOTEBOOK])
    nbformat.write(plots, folder / "90_plots.ipynb")
    failing = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('boom')")])
    nbformat.write(failing, folder / "91_failing.ipynb")
    out = tmp_path_factory.mktemp("book")
    status = book.main([str(REPO / "notebooks" / "00_welcome.ipynb"), str(folder), "--out", str(out),
                        "--profile", "smoke", "--timeout", "300"])
    return status, out


def test_book_pages_inline_plotlyjs_once_and_draw_every_figure(built_book):
    status, out = built_book
    page = (out / "90_plots.html").read_text()
    assert page.count(PLOTLYJS_HEAD) == 1
    assert "require.min.js" not in page and "@jupyter-widgets/html-manager" not in page  # no CDN scripts
    traces = _newplot_traces(page)
    assert [[t["z"] for t in data] for data in traces] == [[[[1, 0], [0, 1]]], [[[2, 0], [0, 2]]]]
    assert 'type="range"' in page and 'value="2"' in page  # the slider, at its final value
    assert 'src="mathjax/MathJax.js' in page and (out / "mathjax" / "MathJax.js").is_file()  # offline math
    welcome = (out / "00_welcome.html").read_text()
    assert PLOTLYJS_HEAD not in welcome and "Welcome to longlora-kit" in welcome  # no figures: no bundle


def test_book_index_lists_every_stage_and_reports_failures(built_book):
    status, out = built_book
    assert status == 1  # one notebook failed
    index = (out / "index.html").read_text()
    for name in ("00_welcome", "90_plots", "91_failing"):
        assert f'href="{name}.html"' in index and (out / f"{name}.html").exists()
    assert "FAILED" in index and "ValueError: boom" in index and index.count(">ok<") == 2
    assert "\x1b" not in index  # no terminal colour codes from the traceback
    assert "<code>smoke</code> profile" in index
    assert "ValueError" in (out / "91_failing.html").read_text()  # the page shows the traceback
