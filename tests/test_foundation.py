"""The repo's own plumbing: packaging, environment.yml sync, the notebook cleanliness check."""

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_package_lives_in_lib_and_is_tracked():
    import longlora_kit

    assert Path(longlora_kit.__file__).resolve().parent == ROOT / "lib" / "longlora_kit"
    ignored = subprocess.run(["git", "check-ignore", "-q", "lib/longlora_kit/__init__.py"], cwd=ROOT)
    assert ignored.returncode == 1, ".gitignore swallows lib/"


def test_torch_is_bounded_below_2_14():
    deps = _pyproject()["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\b", d))
    assert "<2.14" in torch_req and ">=2.5" in torch_req


def test_flash_attn_only_in_gpu_extra():
    project = _pyproject()["project"]
    assert not any("flash" in d for d in project["dependencies"])
    assert not any("flash" in d for d in project["optional-dependencies"]["dev"])
    assert any(d.startswith("flash-attn") for d in project["optional-dependencies"]["gpu"])


def test_environment_yml_in_sync_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # the python pin satisfies requires-python
    py = next(d for d in conda if d.startswith("python="))
    low = re.search(r">=(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    assert tuple(map(int, py.split("=")[1].split(".")[:2])) >= (int(low[1]), int(low[2]))
    # every Python package comes through pip from pyproject.toml, with the same constraints file
    assert "-e .[dev]" in pip and "-c constraints.txt" in pip
    assert {d.split("=")[0] for d in conda} <= {"python", "pip"}, f"conda section duplicates pip packages: {conda}"


def test_constraints_do_not_pin_torch():
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    assert not any(re.match(r"(torch|nvidia|triton)\b", p) for p in pins)


def _nbstripout(*args):
    """nbstripout with the Makefile's flags (one place), from the Python that runs the tests."""
    flags = re.search(r"^NBSTRIPOUT_FLAGS := (.*)$", (ROOT / "Makefile").read_text(), re.M)[1]
    nbstripout = Path(sys.executable).with_name("nbstripout")
    return subprocess.run([str(nbstripout), *shlex.split(flags), *map(str, args)], capture_output=True, text=True)


def _notebook(outputs, count):
    cell = {"cell_type": "code", "id": "c0ffee", "metadata": {"scrolled": True}, "source": ["1 + 1"],
            "outputs": outputs, "execution_count": count}
    return {"cells": [cell], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3"}, "language_info": {"version": "3.11.7"}}}


def test_cleanliness_check_catches_outputs_and_strip_fixes(tmp_path):
    dirty = tmp_path / "dirty.ipynb"
    out = [{"output_type": "execute_result", "data": {"text/plain": ["2"]}, "metadata": {}, "execution_count": 1}]
    dirty.write_text(json.dumps(_notebook(out, 1)))
    assert _nbstripout("--verify", dirty).returncode == 1
    assert _nbstripout(dirty).returncode == 0
    assert _nbstripout("--verify", dirty).returncode == 0
    nb = json.loads(dirty.read_text())
    cell = nb["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None and cell["metadata"] == {}
    assert cell["id"] == "c0ffee"  # kept: stripping ids would rewrite every cell of every notebook
    assert nb["metadata"] == {"kernelspec": {"name": "python3"}}  # language_info (a Python version) goes


def test_committed_notebooks_are_clean():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    result = _nbstripout("--verify", *notebooks)
    assert notebooks and result.returncode == 0, result.stdout + result.stderr


def test_docstring_examples_run_as_tests():
    # `make unit` runs `pytest` without paths: the library's worked examples are collected through this config
    pytest_config = _pyproject()["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in pytest_config["addopts"].split()
    assert "lib/longlora_kit" in pytest_config["testpaths"]
    assert re.search(r"^unit:.*\n\tOMP_NUM_THREADS=1 \$\(BIN\)/python -m pytest -q \$\(XDIST\)$",
                     (ROOT / "Makefile").read_text(), re.M)
