"""Shared test set-up for tests/ and the docstring examples in lib/: quiet, offline, deterministic,
smoke-sized. At the repo root so that `pytest --doctest-modules lib/longlora_kit` gets it too."""

import os

os.environ.setdefault("LONGLORA_KIT_PROFILE", "smoke")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
