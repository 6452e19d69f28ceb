"""Every hand-worked example in an egt docstring is a test (one place for all modules)."""

import doctest
import importlib
import pkgutil

import pytest

import egt

MODULES = sorted(m.name for m in pkgutil.walk_packages(egt.__path__, "egt.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
