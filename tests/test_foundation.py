"""The repo's own plumbing: packaging, environment.yml sync, the notebook cleanliness check."""

import json
import re
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


def _run_checker(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "check_notebooks.py"), *args],
                          capture_output=True, text=True)


def _notebook(outputs, count):
    cell = {"cell_type": "code", "metadata": {}, "source": ["1 + 1"], "outputs": outputs,
            "execution_count": count}
    return {"cells": [cell], "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4,
            "nbformat_minor": 5}


def test_cleanliness_check_catches_outputs_and_strip_fixes(tmp_path):
    dirty = tmp_path / "dirty.ipynb"
    out = [{"output_type": "execute_result", "data": {"text/plain": ["2"]}, "metadata": {}, "execution_count": 1}]
    dirty.write_text(json.dumps(_notebook(out, 1)))
    result = _run_checker(str(tmp_path))
    assert result.returncode == 1 and "has outputs" in result.stdout and "execution count" in result.stdout
    assert _run_checker("--strip", str(tmp_path)).returncode == 0
    assert _run_checker(str(tmp_path)).returncode == 0
    assert json.loads(dirty.read_text())["metadata"]["kernelspec"]["name"] == "python3"


def test_committed_notebooks_are_clean():
    result = _run_checker(str(ROOT / "notebooks"))
    assert result.returncode == 0, result.stdout
