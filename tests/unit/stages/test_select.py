"""egt.stages.select's cost fields, from a hand-made probe table and summary."""

import pandas as pd

from egt.stages.select import probe_cost


def test_the_probe_cost_carries_whether_its_seconds_are_every_shards():
    """Outputs: n_samples per row (8 + 8); the probe's seconds pass through, and its completeness flag where the
    probe recorded one (a probe summary from before egt kept it, or an outside table, adds no key)."""
    table = pd.DataFrame({"n_samples": [8, 8]})
    summary = {"probe_seconds": 30.0, "probe_cpu_seconds": 50.0, "probe_seconds_complete": False}
    assert probe_cost(table, summary) == {
        "probe_draws": 16,
        "probe_seconds": 30.0,
        "probe_cpu_seconds": 50.0,
        "probe_seconds_complete": False,
    }
    assert "probe_seconds_complete" not in probe_cost(table, {"probe_seconds": 30.0})
    assert probe_cost(table, {}) == {"probe_draws": 16, "probe_seconds": None, "probe_cpu_seconds": None}
