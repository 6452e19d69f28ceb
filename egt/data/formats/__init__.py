"""Data formats: how one row of a public release becomes an egt sample (docs/data.md).

A format is a :class:`DataFormat` subclass; egt's own are found by name with no list to keep: the module
``egt/data/formats/<name>.py`` defines the class with ``name = "<name>"`` (egt.components). A source names
one by ``format: <name>``, ``format: {name: <name>, <arguments>}`` or ``format: {_target_: your.Class}``.

>>> from egt.data.formats import names
>>> names()
['mm_rlhf', 'pairs', 'povid', 'r1_reward_rl', 'rlaif_v', 'rlhf_v', 'vlfeedback', 'wildvision_battle']
"""

from egt.data.formats.base import DEFAULT_COLUMNS, EXCLUSIONS, REASONS, DataFormat, RowRejected

__all__ = ["DEFAULT_COLUMNS", "EXCLUSIONS", "REASONS", "DataFormat", "RowRejected", "names"]


def names() -> list[str]:
    """Every built-in format's name."""
    from egt.components import builtin_names

    return builtin_names(DataFormat, __name__)
