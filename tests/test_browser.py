"""The kit where users see it: JupyterLab in a real (headless) Chromium.

Starts JupyterLab from this environment on a free localhost port with a random token, opens the
S2-Attn notebook, runs every cell (smoke profile), and checks in the browser's DOM that

* the plotly heatmaps rendered (each plot element carries as many traces as the kernel sent),
* an ipywidgets slider rendered (a ``viz.Explorer``), and moving it re-draws the figure next to it,
* no cell shows an error.

These are the UI checks: the teaching notebooks no longer carry them (``tests/test_viz.py`` runs the
same re-draw headless). ``LONGLORA_KIT_BROWSER_NOTEBOOK`` picks another notebook with a heatmap and a
slider.

The notebook is copied into a temporary root folder and served from there, so nothing the browser
does (autosave included) can write outputs into ``notebooks/``. A screenshot is saved under
``artifacts/browser/`` (git-ignored). Uses Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it);
Playwright never downloads a browser. Skipped, with the reason, where chromium is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = os.environ.get("LONGLORA_KIT_BROWSER_NOTEBOOK", str(REPO / "notebooks" / "02_s2attn.ipynb"))
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that work in a closed-network sandbox: without the background-networking ones Chromium
# keeps trying to reach Google's hosts (see docs of the CI machine); --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab settings for the test's private settings folder: every cell attached to the DOM
# (the default "contentVisibility" windowing may leave off-screen plots unlaid), no autosave,
# no news/update requests to the internet.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
PLOTLY_MIME = "application/vnd.plotly.v1+json"
SERVER_START_S = 90
RUN_ALL_S = 300  # a guard against hangs, not the budget: the notebook takes ~20-90 s (smoke) here

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (apt-get install chromium)"),
]


def _die_with_parent() -> None:
    """In the server's child process (Linux): get SIGTERM when pytest dies, even by SIGKILL or a timeout."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _shutdown_kernels(base: str, token: str) -> None:
    """Ask the server to stop every kernel (a kernel also exits by itself once the server is gone)."""
    auth = {"Authorization": f"token {token}"}
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/kernels", headers=auth), timeout=5) as r:
            kernels = json.load(r)
        for kernel in kernels:
            request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", method="DELETE", headers=auth)
            urllib.request.urlopen(request, timeout=15).close()


@contextlib.contextmanager
def jupyterlab(root: Path, workdir: Path):
    """Run JupyterLab on ``root``; yield (base_url, token); stop it (whole process group) no matter what."""
    token = secrets.token_hex(16)
    port = _free_port()
    settings_dir = workdir / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (settings_dir / name).write_text(json.dumps(values))
    env = dict(
        os.environ,
        LONGLORA_KIT_PROFILE="smoke",
        HF_HUB_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"),  # ignore the user's own config
        JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"),
    )
    log = workdir / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={workdir / 'lab-workspaces'}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells and read outputs reliably
        "--LabApp.extension_manager=readonly",  # no PyPI listing requests
        "--KernelManager.shutdown_wait_time=2",  # quick stop; kernels also exit when the server dies
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True,  # own process group, killed as a whole below
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{_tail(log)}")
            try:
                request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield base, token, log
    finally:
        _shutdown_kernels(base, token)  # kernels run in sessions of their own, outside the server's group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# --- JavaScript run inside the page (JupyterLab exposes its application as window.jupyterapp) ---

RUN_ALL_JS = """async (timeoutMs) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  const runAll = async () => {
    await panel.context.ready;
    await panel.sessionContext.ready;  // never resolves if a "select kernel" dialog waits for a click
    return await app.commands.execute('notebook:run-all-cells');
  };
  const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error('run-all did not finish in ' + timeoutMs + ' ms')), timeoutMs));
  return await Promise.race([runAll(), timeout]);
}"""

# Per code cell: its prompt, the error outputs and plotly trace counts the kernel sent (notebook model),
# and what the DOM shows (plot elements outside widgets with their trace counts, sliders, tracebacks).
CELLS_JS = """(plotlyMime) => {
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.widgets.filter(c => c.model.type === 'code').map((cell, i) => {
    const outputs = [];
    for (let j = 0; j < cell.model.outputs.length; j++) outputs.push(cell.model.outputs.get(j).toJSON());
    const node = cell.node;
    const plots = [...node.querySelectorAll('.js-plotly-plot')];
    const inWidget = p => p.closest('.jupyter-widgets') !== null;
    return {
      index: i,
      source: cell.model.sharedModel.getSource().slice(0, 80),
      prompt: node.querySelector('.jp-InputPrompt')?.innerText ?? '',
      errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
      sentTraces: outputs.filter(o => o.data && o.data[plotlyMime]).map(o => o.data[plotlyMime].data.length),
      domTraces: plots.filter(p => !inWidget(p)).map(p => p.data.length),
      traceTypes: plots.map(p => p.data.map(t => t.type)),
      drawnHeatmaps: node.querySelectorAll('.heatmaplayer image, .hm image').length,
      sliders: node.querySelectorAll('.widget-slider .noUi-handle, .widget-hslider .noUi-handle').length,
      widgetPlots: plots.filter(inWidget).length,
      domTracebacks: [...node.querySelectorAll('.jp-OutputArea-output')]
          .filter(o => o.innerText.includes('Traceback (most recent call last)')).length,
    };
  });
}"""

# A fingerprint of every figure drawn inside the widgets of one cell (data and layout title).
WIDGET_FIGURES_JS = """(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cell = panel.content.widgets.filter(c => c.model.type === 'code')[index];
  return [...cell.node.querySelectorAll('.jupyter-widgets .js-plotly-plot')].map(
      p => JSON.stringify([p.data, p.layout && p.layout.title]));
}"""


def _wait_for(page, what: str, predicate, timeout_s: float):
    """Poll ``predicate()`` (Python side) until it returns a truthy value; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        page.wait_for_timeout(250)


@pytest.fixture(scope="module")
def notebook_path() -> Path:
    path = Path(NOTEBOOK)
    if not path.exists():
        pytest.skip(f"{path.name} is not in notebooks/ yet")
    return path


def test_notebook_runs_and_renders_in_jupyterlab(notebook_path: Path, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    digest_before = hashlib.sha256(notebook_path.read_bytes()).hexdigest()
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(notebook_path, root / notebook_path.name)  # serve a copy: the real file stays untouched
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{notebook_path.stem}.png"

    timings = {}
    start = time.monotonic()
    with jupyterlab(root, tmp_path) as (base, token, log), sync_api.sync_playwright() as pw:
        timings["server up"] = time.monotonic() - start
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            console_errors = []
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            page.goto(f"{base}/lab/tree/{notebook_path.name}?token={token}", wait_until="domcontentloaded")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.content"
                " && window.jupyterapp.shell.currentWidget.content.widgets.length > 0",
                timeout=60_000,
            )
            timings["page loaded"] = time.monotonic() - start
            all_ok = page.evaluate(RUN_ALL_JS, RUN_ALL_S * 1000)
            timings["cells ran"] = time.monotonic() - start

            # Outputs arrive in the model as the kernel sends them; give plotly/widgets a moment to draw.
            def settled():
                cells = page.evaluate(CELLS_JS, PLOTLY_MIME)
                drawn = all(len(c["domTraces"]) >= len(c["sentTraces"]) for c in cells)
                return cells if drawn else None

            cells = _wait_for(page, "plotly figures to render", settled, 30)
            errors = [f"cell {c['index']} ({c['source']!r}): {e}" for c in cells for e in c["errors"]]
            tracebacks = [c["index"] for c in cells if c["domTracebacks"]]
            unrun = [c["index"] for c in cells if not any(ch.isdigit() for ch in c["prompt"])]
            assert not errors, "cells raised:\n" + "\n".join(errors)
            assert not tracebacks, f"cells {tracebacks} show a traceback"
            assert all_ok is True and not unrun, f"run-all returned {all_ok}; cells never ran: {unrun}"

            # Every figure the kernel sent is drawn, with the same number of traces; at least one is a heatmap.
            for c in cells:
                assert c["domTraces"] == c["sentTraces"], (
                    f"cell {c['index']}: kernel sent figures with {c['sentTraces']} traces, "
                    f"the page shows {c['domTraces']}"
                )
            heatmap_cells = [c for c in cells if any("heatmap" in types for types in c["traceTypes"])]
            assert heatmap_cells, "no heatmap was rendered"
            assert all(c["drawnHeatmaps"] > 0 for c in heatmap_cells), "a heatmap trace drew no image"

            # An ipywidgets slider rendered next to a figure; moving it re-draws that figure.
            slider_cells = [c for c in cells if c["sliders"] and c["widgetPlots"]]
            assert slider_cells, "no cell shows an ipywidgets slider with a figure in its output"
            index = slider_cells[0]["index"]
            before = page.evaluate(WIDGET_FIGURES_JS, index)
            cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
            handle = cell.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            # noUiSlider handles move by one step per arrow key; go left when already at the maximum.
            now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
            at_max = now is not None and now == top
            page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
            after = _wait_for(
                page,
                "the figure to change after moving the slider",
                lambda: (figs := page.evaluate(WIDGET_FIGURES_JS, index)) and figs != before and figs,
                30,
            )
            assert len(after) == len(before) and after != before

            timings["slider checked"] = time.monotonic() - start
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the notebook
            cell.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot))
            # Output errors after the slider moved (a callback that raises shows up as a traceback).
            cells_after = page.evaluate(CELLS_JS, PLOTLY_MIME)
            assert not any(c["domTracebacks"] for c in cells_after), "a widget callback raised"
            assert not console_errors, f"uncaught errors in the page: {console_errors}"
        finally:
            with contextlib.suppress(Exception):
                if not shot.exists():
                    page.screenshot(path=str(ARTIFACTS / f"{notebook_path.stem}-failure.png"))
            browser.close()

    timings["server stopped"] = time.monotonic() - start
    print("browser test timings (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert hashlib.sha256(notebook_path.read_bytes()).hexdigest() == digest_before, "the notebook was modified"
