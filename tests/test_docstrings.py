"""Every worked example in the library's docstrings runs and gives the output it shows."""

import doctest
import importlib
import pkgutil

import pytest

import longlora_kit

# sub-packages too (``experiments.claims``, ...)
MODULES = sorted(m.name.removeprefix("longlora_kit.")
                 for m in pkgutil.walk_packages(longlora_kit.__path__, prefix="longlora_kit."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"longlora_kit.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"


def test_the_examples_are_found():
    found = sum(len(t.examples) for name in MODULES
                for t in doctest.DocTestFinder().find(importlib.import_module(f"longlora_kit.{name}")))
    assert found > 50
