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
    """A component's option names its ``_target_``; a method file (``# @package _global_``) picks options by
    its defaults list, each of which exists or is one the doc adds."""
    conf = DOC.parents[1] / "conf"
    for block in _blocks("yaml"):
        node = yaml.safe_load(block)
        if block.startswith("# @package _global_"):
            for entry in node["defaults"]:  # {"override /<group>": "<option>"}
                ((key, option),) = entry.items()
                group = key.removeprefix("override /")
                assert (conf / group / f"{option}.yaml").is_file() or option in DOC.read_text(), entry
        else:
            assert "_target_" in str(node), block
