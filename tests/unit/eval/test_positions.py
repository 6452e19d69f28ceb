"""Per-position teacher-forced NLL (egt.eval.positions)."""

import math

import pytest
import torch

from egt.data.encode import IGNORE
from egt.eval.positions import aggregate, format_report, main


def test_aggregate_hand_worked():
    # vocab of 3; two samples, labels start at different offsets (prompt masked)
    p = torch.tensor(
        [
            [[0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.2, 0.7, 0.1]],
            [[0.6, 0.2, 0.2], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4]],
        ]
    )
    labels = torch.tensor([[IGNORE, 0, 1], [0, 2, 2]])
    rep = aggregate(p.log(), labels, ["count", "count"])["count"]
    # position 0: sample 0 -> p=0.5 (argmax, hit); sample 1 -> p=0.6 (hit)
    assert rep[0]["n"] == 2 and rep[0]["acc"] == 1.0
    assert rep[0]["nll"] == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2)
    assert rep[0]["tokens"] == ["0"] and rep[0]["options"] == 1
    # position 1: sample 0 -> token 1, p=0.7 (hit); sample 1 -> token 2, p=0.6 (hit)
    assert rep[1]["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.6)) / 2)
    assert rep[1]["options"] == 2 and sorted(rep[1]["tokens"]) == ["1", "2"]
    # position 2: only sample 1 -> token 2, p=0.4 (argmax: 0.4 > 0.3, hit)
    assert rep[2] == {"pos": 2, "tokens": ["2"], "options": 1, "nll": pytest.approx(-math.log(0.4)), "acc": 1.0, "n": 1}
    assert len(rep) == 3


def test_aggregate_counts_misses_and_splits_kinds():
    p = torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]])
    rep = aggregate(p.log(), torch.tensor([[1], [0]]), ["color", "exist"])
    assert rep["color"][0]["acc"] == 0.0 and rep["color"][0]["nll"] == pytest.approx(-math.log(0.1))
    assert rep["exist"][0]["acc"] == 1.0
    text = format_report(rep)
    assert "### color" in text and "| 0 | `1` | 2.303 | 0.00 | 0.00 | 1 |" in text


def test_aggregate_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes disagree"):
        aggregate(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long), ["a", "b"])


def test_cli_on_the_tiny_model(tiny_model_dir, world_small, tmp_path, capsys):
    data = tmp_path / "dataset"
    world_small.save_to_disk(str(data))
    out = tmp_path / "report.json"
    main(["--model", str(tiny_model_dir), "--data", str(data), "--n", "6", "--json", str(out)])
    text = capsys.readouterr().out
    assert "| pos | token(s) | NLL |" in text
    import json

    rep = json.loads(out.read_text())
    assert sum(rows[0]["n"] for rows in rep.values()) == 6  # every sample has a position 0
    assert all(r["nll"] > 0 and 0 <= r["acc"] <= 1 for rows in rep.values() for r in rows)


def test_aggregate_puts_a_description_prefix_in_its_own_table():
    p = torch.tensor([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]]])
    labels = torch.tensor([[1, 0, 1], [IGNORE, 0, 1]])
    rep = aggregate(p.log(), labels, ["exist", "color"], prefix=[2, 1])
    # sample 0: positions 0-1 -> scene 0-1, position 2 -> exist 0; sample 1: first labelled -> scene 0
    assert [r["n"] for r in rep["scene"]] == [2, 1]
    assert rep["scene"][0]["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.5)) / 2)
    assert rep["exist"] == [
        {"pos": 0, "tokens": ["1"], "options": 1, "nll": pytest.approx(-math.log(0.7)), "acc": 1.0, "n": 1}
    ]
    assert rep["color"][0]["nll"] == pytest.approx(-math.log(0.8))


def test_cli_describe_reports_the_scene(tiny_model_dir, world_small, tmp_path, capsys):
    data = tmp_path / "dataset"
    world_small.save_to_disk(str(data))
    main(["--model", str(tiny_model_dir), "--data", str(data), "--n", "4", "--describe"])
    text = capsys.readouterr().out
    assert "### scene" in text
    assert "| 0 | ` Colour` |" in text or "| 0 | ` Count` |" in text or "| 0 | ` Find` |" in text
