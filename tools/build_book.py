"""Render the kit as a book: every notebook executed, as offline HTML pages with live plotly figures.

    python tools/build_book.py                          # workshop profile, all notebooks -> build/book/
    python tools/build_book.py --profile smoke          # quick pass (or BOOK_PROFILE=smoke)
    python tools/build_book.py notebooks/02_s2attn.ipynb --out /tmp/book

For workshops: attendees can read every stage, with its figures (zoom, hover), without running anything.

How a page is made:

1. the notebook runs top to bottom in a fresh kernel (``nbclient``), with ``LONGLORA_KIT_PROFILE`` set to the
   book's profile, in the notebook's own folder;
2. each plotly output (``application/vnd.plotly.v1+json``, what the kit's ``plotly_mimetype`` renderer
   sends) becomes a ``<div>`` plus a ``Plotly.newPlot`` call, via ``plotly.io.to_html(include_plotlyjs=False)``;
3. ipywidgets have no kernel to talk to in a static page, so each widget is drawn as it was when the
   notebook finished: a slider as a disabled slider at its value, an ``Output`` widget as the outputs it
   held (usually the figure for the slider's start value);
4. nbconvert's ``lab`` template writes the page, with plotly.js from the installed plotly package
   inlined **once** in the page's head (pages without figures carry none) instead of require.js from a CDN.

Plots therefore work offline. Math is typeset by MathJax 2.7, copied once into ``build/book/mathjax/``
from the ``jupyter-server-mathjax`` package (dev extra), so it works offline too (without that package
the pages fall back to MathJax from its CDN). An ``index.html`` lists the stages (the README's stage table), with each notebook's
run time in the book's profile. A notebook that fails is still rendered (up to the failing cell, with
its traceback), marked FAILED on the index, and makes the command exit with status 1.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import nbformat

REPO = Path(__file__).resolve().parents[1]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_KEY = "application/vnd.jupyter.widget-state+json"
PROFILES = ("smoke", "workshop", "full")
MATHJAX_DIR = "mathjax"  # shared by every page of the book, next to them (relative, so it works offline)
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"

# The lab template with require.js (a CDN script, and an AMD loader that would hide window.Plotly)
# replaced by the inlined plotly.js bundle; nothing else changes.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
{%- if resources.plotlyjs -%}
<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>
<script type="text/javascript">{{ resources.plotlyjs }}</script>
{%- endif -%}
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
{{ super() }}
{%- if resources.local_mathjax %}
<!-- jupyter-server-mathjax ships the STIX-Web fonts only (MathJax's default TeX fonts are not there) -->
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}});
</script>
{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{{ super() }}
<nav class="book-nav"><a href="index.html">&larr; all stages</a> · rendered in the
<code>{{ resources.book_profile }}</code> profile · run it yourself: <code>make lab</code></nav>
{%- endblock body_header -%}
{% block extra_css %}
<style>
  .book-nav { font: 14px sans-serif; padding: 8px 16px; border-bottom: 1px solid #ddd; }
  .book-widget { font: 13px sans-serif; color: #444; padding: 4px 0; }
  .book-widget input[type=range] { vertical-align: middle; width: 220px; }
</style>
{% endblock extra_css %}
"""


@dataclass
class PageResult:
    """One rendered notebook: where it went, how long it ran, and whether it ran to the end."""

    notebook: Path
    page: Path
    title: str
    seconds: float
    n_figures: int
    error: str | None = None


# --- outputs -> static HTML ------------------------------------------------------------------------


def plotly_to_html(figure: dict) -> str:
    """The ``<div>`` + ``Plotly.newPlot`` script for one plotly figure dict, without plotly.js itself.

    >>> snippet = plotly_to_html({"data": [{"type": "heatmap", "z": [[1, 2]]}], "layout": {}})
    >>> 'class="plotly-graph-div"' in snippet and "Plotly.newPlot" in snippet and "plotly.js v" not in snippet
    True
    """
    import plotly.io as pio

    figure = {"data": figure.get("data", []), "layout": figure.get("layout", {})}
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"responsive": True})


def _html_output(markup: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data={"text/html": markup})


def _control_html(model_name: str, state: dict) -> str:
    """A widget control drawn as it stood when the notebook finished (disabled: no kernel here)."""
    label = html.escape(str(state.get("description", "")))
    value = state.get("value")
    if {"min", "max", "value"} <= state.keys() and not isinstance(value, list | tuple):
        step = state.get("step") or 1
        return (f'<div class="book-widget">{label} <input type="range" min="{state["min"]}" '
                f'max="{state["max"]}" step="{step}" value="{value}" disabled> {html.escape(str(value))} '
                "<em>(move it in JupyterLab)</em></div>")
    labels, index = state.get("_options_labels"), state.get("index")
    if labels is not None and isinstance(index, int) and 0 <= index < len(labels):  # Dropdown, RadioButtons...
        return (f'<div class="book-widget">{label} <select disabled><option>{html.escape(str(labels[index]))}'
                "</option></select> <em>(choose in JupyterLab)</em></div>")
    if value is not None:
        return f'<div class="book-widget">{label} <code>{html.escape(str(value))}</code></div>'
    return f'<div class="book-widget"><em>[{html.escape(model_name)}: interactive in JupyterLab]</em></div>'


def widget_outputs(model_id: str, widget_state: dict, _seen: frozenset = frozenset()) -> list:
    """Static outputs standing in for the widget ``model_id`` (recursing into boxes and Output widgets).

    ``widget_state`` maps model ids to ``{"model_name", "state"}``, as nbclient stores it in
    ``notebook.metadata.widgets``. Unknown ids (state not stored) give a one-line note.
    """
    entry = widget_state.get(model_id)
    if entry is None or model_id in _seen:
        return [_html_output('<div class="book-widget"><em>[widget: interactive in JupyterLab]</em></div>')]
    seen = _seen | {model_id}
    name, state = entry.get("model_name", "widget"), entry.get("state", {})
    if name == "OutputModel":
        return [copy.deepcopy(o) for o in state.get("outputs", [])]
    if "children" in state:  # VBox, HBox, interact's container, ...
        return [out for child in state["children"] for out in
                widget_outputs(child.removeprefix("IPY_MODEL_"), widget_state, seen)]
    return [_html_output(_control_html(name, state))]


def make_static(nb: nbformat.NotebookNode) -> int:
    """Rewrite ``nb``'s outputs in place for a static page; return how many plotly figures it holds."""
    widget_state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_KEY, {}).get("state", {})
    n_figures = 0

    def convert(outputs: list) -> list:
        nonlocal n_figures
        converted = []
        for output in outputs:
            data = output.get("data", {})
            if WIDGET_VIEW_MIME in data:
                converted += convert(widget_outputs(data[WIDGET_VIEW_MIME]["model_id"], widget_state))
            elif PLOTLY_MIME in data:
                n_figures += 1
                converted.append(_html_output(plotly_to_html(data[PLOTLY_MIME])))
            else:
                converted.append(output)
        return converted

    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = convert(cell.outputs)
    nb.metadata.pop("widgets", None)  # else the template loads the widget manager from a CDN
    return n_figures


# --- execute and export ----------------------------------------------------------------------------


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first markdown heading, without its ``#`` marks."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def execute_in_process(nb: nbformat.NotebookNode, folder: Path, timeout: int) -> str | None:
    """Run ``nb`` in place in a fresh kernel started in ``folder``; return the error text, or None."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbclient.output_widget import OutputWidget

    class CapturingOutputWidget(OutputWidget):
        """nbclient's Output-widget mimic, minus sending the captured outputs back to the kernel.

        The book only needs the captured outputs (kept in the widget state). Executions in which the mimic
        sent them back on the shell channel were seen to stall for good after a cell that re-draws into an
        Output widget (kernel idle, client waiting), in 3 of about 8 runs here.
        """

        def sync_state(self) -> None:
            pass

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.widget_registry = {"@jupyter-widgets/output": {"OutputModel": CapturingOutputWidget}}
    try:
        client.execute()
    except CellExecutionError as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # tracebacks carry terminal colours
        return text.splitlines()[-1] if text else type(exc).__name__
    except Exception as exc:  # a cell timeout, a dead kernel: still render what ran
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, str | None]:
    """Execute the notebook at ``path`` in a child process; return the executed notebook and the error text.

    One process per notebook, so that no client state carries over from one notebook to the next.
    """
    with tempfile.TemporaryDirectory() as tmp:
        executed, error = Path(tmp) / "executed.ipynb", Path(tmp) / "error.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--execute-one", str(path), str(executed),
               "--timeout", str(timeout)]
        subprocess.run(cmd, check=False)
        if not executed.exists():
            return nbformat.read(path, as_version=4), "the executing process died (see the output above)"
        nb = nbformat.read(executed, as_version=4)
        return nb, (error.read_text() or None) if error.exists() else None


def exporter(mathjax_url: str | None = None):
    from nbconvert import HTMLExporter

    loader = jinja2.DictLoader({"book.html.j2": PAGE_TEMPLATE})
    local = {"mathjax_url": mathjax_url} if mathjax_url else {}  # else nbconvert's CDN default
    return HTMLExporter(template_name="lab", template_file="book.html.j2", extra_loaders=[loader], **local)


def copy_mathjax(out: Path) -> bool:
    """MathJax 2.7 (from the jupyter-server-mathjax package) into ``out/mathjax``, once; False if absent."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return False
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / MATHJAX_DIR
    if not (target / "MathJax.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return True


def render_page(nb: nbformat.NotebookNode, name: str, profile: str, plotlyjs: str | None,
                mathjax_url: str | None = None) -> str:
    body, _ = exporter(mathjax_url).from_notebook_node(
        nb, resources={"metadata": {"name": name}, "plotlyjs": plotlyjs, "book_profile": profile,
                       "local_mathjax": bool(mathjax_url)}
    )
    return body


def build_page(path: Path, out: Path, profile: str, timeout: int, mathjax_url: str | None = None) -> PageResult:
    start = time.perf_counter()
    nb, error = execute(path, timeout)
    seconds = time.perf_counter() - start
    title = notebook_title(nb, path.stem)
    n_figures = make_static(nb)
    from plotly.offline import get_plotlyjs

    page = out / f"{path.stem}.html"
    plotlyjs = get_plotlyjs() if n_figures else None
    page.write_text(render_page(nb, title, profile, plotlyjs, mathjax_url), encoding="utf-8")
    return PageResult(path, page, title, seconds, n_figures, error)


# --- index -----------------------------------------------------------------------------------------


def stage_descriptions(readme: Path = REPO / "README.md") -> dict[str, str]:
    """``{"00_welcome": "what it teaches", ...}`` from the README's stage table (rows starting | `NN_name` |)."""
    if not readme.exists():
        return {}
    rows = re.findall(r"^\|\s*`(\d\d_\w+)`\s*\|\s*([^|]+?)\s*\|", readme.read_text(encoding="utf-8"), re.MULTILINE)
    return dict(rows)


def _inline_markdown(text: str) -> str:
    """Escape, then allow the README's `code` and **bold** spans."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def render_index(results: list[PageResult], profile: str, descriptions: dict[str, str]) -> str:
    rows = []
    for r in results:
        status = "ok" if r.error is None else f'<b style="color:#b00">FAILED</b>: {html.escape(r.error)}'
        what = _inline_markdown(descriptions.get(r.notebook.stem, ""))
        rows.append(
            f'<tr><td><a href="{html.escape(r.page.name)}">{html.escape(r.notebook.stem)}</a></td>'
            f"<td>{html.escape(r.title)}</td><td>{what}</td><td>{r.n_figures}</td>"
            f"<td>{r.seconds:.0f} s</td><td>{status}</td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>longlora-kit: the book</title>
<style>
  body {{ font: 15px/1.5 sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }}
  th {{ background: #f5f5f5; }}
  code {{ background: #f3f3f3; padding: 0 3px; }}
</style></head>
<body>
<h1>longlora-kit: the book</h1>
<p>Every stage of the kit, executed top to bottom in the <code>{html.escape(profile)}</code> profile on
{time.strftime("%Y-%m-%d %H:%M %Z")}. Figures are live (zoom, hover) and work offline; sliders are
shown at their start value: to move them, run the notebook in JupyterLab (<code>make lab</code>).</p>
<table>
<tr><th>notebook</th><th>title</th><th>what it teaches</th><th>figures</th><th>run time</th><th>status</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""


def build_book(notebooks: list[Path], out: Path, profile: str, timeout: int = 1200) -> list[PageResult]:
    """Execute and render ``notebooks`` into ``out`` (pages + index.html) in ``profile``; return the results."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not a profile; choose one of {', '.join(PROFILES)}")
    if not notebooks:
        raise ValueError("notebooks is empty: give .ipynb files or a folder that holds some")
    out.mkdir(parents=True, exist_ok=True)
    mathjax_url = MATHJAX_URL if copy_mathjax(out) else None
    if mathjax_url is None:
        print("book: jupyter-server-mathjax is not installed: math will need MathJax from its CDN", flush=True)
    os.environ["LONGLORA_KIT_PROFILE"] = profile  # inherited by every kernel started below
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    for path in notebooks:
        print(f"book: running {path.name} ({profile}) ...", flush=True)
        result = build_page(path, out, profile, timeout, mathjax_url)
        state = "ok" if result.error is None else f"FAILED ({result.error})"
        print(f"book:   {result.page} in {result.seconds:.1f} s, {result.n_figures} figures, {state}", flush=True)
        results.append(result)
    (out / "index.html").write_text(render_index(results, profile, stage_descriptions()), encoding="utf-8")
    return results


def find_notebooks(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.exists():
            found.append(path)
        else:
            raise ValueError(f"{path} is neither a notebook nor a folder; give .ipynb files or a folder")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, default=[REPO / "notebooks"], help="notebooks or folders")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "book", help="output folder")
    parser.add_argument("--profile", default=os.environ.get("BOOK_PROFILE", "workshop"), choices=PROFILES,
                        help="run budget for the executions (default: $BOOK_PROFILE or workshop)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell (default: %(default)s)")
    parser.add_argument("--execute-one", nargs=2, type=Path, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute_one:  # the child process of execute(): run SRC, write DST (+ error.txt beside it)
        source, target = args.execute_one
        nb = nbformat.read(source, as_version=4)
        error = execute_in_process(nb, source.parent, args.timeout)
        nbformat.write(nb, target)
        if error:
            (target.parent / "error.txt").write_text(error)
        return 0
    try:
        results = build_book(find_notebooks(args.paths), args.out, args.profile, args.timeout)
    except ValueError as exc:
        print(f"build_book: {exc}", file=sys.stderr)
        return 2
    failed = [r.notebook.name for r in results if r.error is not None]
    print(f"book: {args.out / 'index.html'} ({len(results)} pages" + (f"; FAILED: {failed})" if failed else ")"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
