#!/usr/bin/env bash
# The compatibility job (issue 19): the core modules' unit tests under the OLDEST versions the kit claims.
#
# pyproject.toml's floors for transformers, peft and accelerate are installed exactly (`name==floor`) in
# a second virtual environment (build/compat-venv), next to torch 2.13 CPU (the registry's only CPU build
# of torch; older torch versions come as multi-GB CUDA builds, so the torch floor is not tested here).
# safetensors, tokenizers, numpy and pandas get what those pins resolve to. Only what the core modules
# need is installed (no plotly, gguf, jupyter), and the kit is not installed: PYTHONPATH=lib.
#
#   tools/compat_env.sh            (also `make compat`; .ci/run calls it after `make test`)
#
# Tested: the unit tests and docstring examples of rope, patterns, s2attn, kernels, lora, models, memory
# and data (not the notebooks, not the real model), and that accelerate's Accelerator starts (the training
# loop's engine; train's own tests are not in this job). Prints the versions and the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${COMPAT_VENV:-build/compat-venv}
TORCH=${COMPAT_TORCH:-torch==2.13.0}
start=$SECONDS

# name==floor for the pinned three, the pyproject spec for the rest (one source of truth: pyproject.toml)
pins=$("$PYTHON" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
spec = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower(): d for d in deps}
for name in ("transformers", "peft", "accelerate"):
    floor = re.search(r">=\s*([0-9][0-9.]*)", spec[name]).group(1)
    print(f"{name}=={floor}")
for name in ("safetensors", "tokenizers", "numpy", "pandas"):  # pandas: lora's parameter report
    print(spec[name])
PY
)
mapfile -t requirements <<< "$pins"
wanted="${TORCH} ${requirements[*]} pytest>=8 pytest-xdist>=3.5"
if [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$wanted" ]; then  # same pins as last time: reuse the venv
    echo "compat: reusing ${VENV} (${wanted})"
else
    echo "compat: installing ${wanted} into ${VENV}"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086  # $wanted is a list of requirement words
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $wanted \
        2> >(grep -v "^WARNING: Location" >&2)
    echo "$wanted" > "$VENV/.pins"
fi
installed=$SECONDS
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE "^(torch|transformers|peft|accelerate|safetensors|tokenizers|numpy|huggingface.hub) "

core="rope patterns s2attn models lora memory data"
tests=() ; docs=()
for m in $core kernels; do [ -f "tests/test_$m.py" ] && tests+=("tests/test_$m.py"); done
for m in $core; do docs+=("lib/longlora_kit/$m.py"); done
status=0
"$VENV/bin/python" -c "from accelerate import Accelerator; Accelerator(cpu=True)" || status=$?
jobs=${JOBS:-$(n=$(nproc 2>/dev/null || echo 2); echo $(( n < 4 ? n : 4 )))}  # as `make test`: a worker per core
PYTHONPATH=lib OMP_NUM_THREADS=1 LONGLORA_KIT_PROFILE=smoke "$VENV/bin/python" -m pytest -q -n "$jobs" \
    -p no:cacheprovider "${tests[@]}" "${docs[@]}" lib/longlora_kit/kernels \
    || status=$?
echo "compat: install $((installed - start)) s, tests $((SECONDS - installed)) s, total $((SECONDS - start)) s"
exit $status
