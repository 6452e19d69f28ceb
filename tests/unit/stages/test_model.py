"""egt.stages.model: a checkpoint directory is used as it is and identified by its content; a built
model goes through the store once."""

import shutil

import pytest
from omegaconf import OmegaConf

from egt.pipeline import Pipeline


def _pipe(tmp_path, **model):
    cfg = OmegaConf.create(
        {
            "paths": {"artifacts": str(tmp_path / "artifacts")},
            "stages": ["model"],
            "model": {
                "name": "tiny",
                "path": None,
                "build": None,
                "dtype": "float32",
                "attn_implementation": "sdpa",
                "trust_remote_code": False,
                **model,
            },
        }
    )
    return Pipeline(cfg)


def test_a_checkpoint_is_used_in_place_and_keyed_by_content(tmp_path, tiny_model_dir):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, ckpt)
    first = _pipe(tmp_path, path=str(ckpt)).get("model")
    assert first["model_path"] == str(ckpt.resolve()) and first["reused"] is True
    assert (
        first["identity"]["path"] == str(ckpt.resolve()) and first["key"] == f"external-{first['identity']['content']}"
    )
    assert not (tmp_path / "artifacts" / "models").exists()  # nothing copied or built
    (ckpt / "generation_config.json").write_text((ckpt / "generation_config.json").read_text() + "\n")
    second = _pipe(tmp_path, path=str(ckpt)).get("model")
    assert second["key"] != first["key"]  # retrained in place: every downstream key follows


def test_a_missing_checkpoint_names_the_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.path=.*nowhere: no such directory"):
        _pipe(tmp_path, path=str(tmp_path / "nowhere")).get("model")


def test_a_built_model_is_built_once_and_then_reused(tmp_path):
    build = {
        "kind": "world",
        "hidden_size": 16,
        "num_layers": 1,
        "num_heads": 2,
        "num_kv_heads": 1,
        "intermediate_size": 32,
        "vision_depth": 1,
        "vision_hidden_size": 16,
        "vision_heads": 2,
        "vocab_size": 400,
        "tie_word_embeddings": False,
        "seed": 0,
    }
    first = _pipe(tmp_path, build=build).get("model")
    assert (
        first["reused"] is False
        and (tmp_path / "artifacts" / "models" / first["key"] / "model" / "config.json").exists()
    )
    assert first["identity"] == {"built": first["key"]} and first["summary"]["parameters"] > 0
    again = _pipe(tmp_path, build=build).get("model")
    assert again["reused"] is True and again["key"] == first["key"]
    with pytest.raises(ValueError, match="model.build.kind='nope'"):
        _pipe(tmp_path, build={**build, "kind": "nope"}).get("model")


def test_eval_can_name_the_base_model(tmp_path, monkeypatch):
    from egt.stages.eval import _models

    cfg = OmegaConf.create(
        {
            "paths": {"artifacts": str(tmp_path)},
            "stages": ["model", "sft", "eval"],
            "eval": {"model_path": None, "models": ["model", "sft", "rl"]},
        }
    )
    monkeypatch.setattr("egt.stages.model.run", lambda c, p: {"key": "m", "model_path": "/base"})
    monkeypatch.setattr("egt.stages.sft.run", lambda c, p: {"key": "s", "model_path": "/sft"})
    pipe = Pipeline(cfg)
    pipe._running.append("eval")  # as inside the eval stage: its REQUIRES apply
    got = _models(cfg, pipe)
    assert [(m["label"], m["path"], m["identity"]["key"]) for m in got] == [
        ("model", "/base", "m"),
        ("sft", "/sft", "s"),
    ]
