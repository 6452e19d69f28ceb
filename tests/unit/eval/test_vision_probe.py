"""The linear probe on a vision tower's image tokens (egt.eval.vision_probe)."""

import math

import pytest
import torch

from egt.eval.vision_probe import balanced_accuracy, linear_probe, main, probe_scenes, scene_targets


def test_balanced_accuracy_hand_worked():
    pred = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 1]])
    target = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]])
    bal = balanced_accuracy(pred, target)
    # column 0: positives 1/1 hit, negatives 2/3 -> (1 + 2/3) / 2; column 1 has no positive
    assert bal[0].item() == pytest.approx(5 / 6)
    assert math.isnan(bal[1].item())


def test_scene_targets():
    scenes = [
        [{"kind": "circle", "colour": "red"}],
        [{"kind": "square", "colour": "red"}, {"kind": "circle", "colour": "blue"}],
    ]
    y = scene_targets(scenes, ["circle", "square"], ["red", "blue"])
    # columns: circle-red, circle-blue, square-red, square-blue
    assert y.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]


def test_probe_separates_what_is_there_and_not_what_is_not():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 12, generator=gen)
    y_readable = torch.stack([x[:, 0] > 0.5, x[:, 1] + x[:, 2] < 0], 1).float()  # skewed and balanced
    r = linear_probe(x, y_readable)
    assert r["balanced_accuracy"] > 0.95 and r["worst_pair"] > 0.9
    assert r["n_train"] == 480 and r["n_test"] == 120
    y_noise = (torch.rand(600, 3, generator=gen) < 0.3).float()
    assert 0.35 < linear_probe(x, y_noise)["balanced_accuracy"] < 0.65
    with pytest.raises(ValueError, match="matching rows"):
        linear_probe(x, y_noise[:5])


def test_probe_on_tiny_model_and_cli(tiny_model_dir, capsys):
    from egt.models.loader import load_model, load_processor

    model, processor = load_model(tiny_model_dir), load_processor(tiny_model_dir)
    r = probe_scenes(model, processor, n=60, layout="grid")
    assert 0.0 <= r["balanced_accuracy"] <= 1.0 and r["n_test"] == 12
    main(["--model", str(tiny_model_dir), "--n", "40", "--layout", "free"])
    out = capsys.readouterr().out
    assert "| free |" in out and "balanced accuracy" in out
