"""docs/extending.md's worked examples run as written: every ```python block, in order, in one module
(registered, so the examples' ``_target_`` paths resolve), and every ```yaml block parses."""

import re
import sys
import types
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_the_worked_examples_run():
    blocks = _blocks("python")
    assert len(blocks) >= 8  # a class and its use, for each of the four kinds
    module = types.ModuleType("extending_examples")
    sys.modules[module.__name__] = module
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{DOC}:python block {i}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def test_the_yaml_options_parse_and_name_a_target():
    for block in _blocks("yaml"):
        node = yaml.safe_load(block)
        assert "_target_" in str(node), block
