"""The judge card (egt_judge.json) and the model card (README.md): round trip, redaction, the numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.data.prompt import TEMPLATES, template_key
from egt.judge.card import CARD_FILE, judge_card, read_card, write_card
from egt.judge.model_card import CARD_METRICS, EVALS_FILE, record_evaluation, write_model_card

CONF = Path(__file__).resolve().parents[3] / "conf"


def cfg_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["model=tiny", *overrides])


PROCESSOR = SimpleNamespace(image_processor=SimpleNamespace(size={"shortest_edge": 3136, "longest_edge": 12544}))
DATA = {"splits": {"sft_pool": {"n": 64, "sources": {"a": 40, "b": 24}, "label_1": 30}, "bench": {"n": 32}}}


def test_card_round_trips_and_holds_what_the_judge_needs(tmp_path):
    cfg = cfg_with("data.template=r1_reward", "eval.max_new_tokens=77", "eval.max_length=999")
    card = judge_card(cfg, "sft", "/base/model", PROCESSOR, DATA)
    write_card(tmp_path, card)
    back = read_card(tmp_path)
    assert back == json.loads(json.dumps(card))  # what is read is what was written
    instruction, body = TEMPLATES["r1_reward"]
    assert back["template"] == {
        "name": "r1_reward",
        "key": template_key("r1_reward"),
        "instruction": instruction,
        "body": body,
    }
    assert back["pixel_budget"] == {"min_pixels": 3136, "max_pixels": 12544}
    assert back["generation"] == {
        "temperature": 0.0,
        "max_new_tokens": 77,
        "top_k": None,
        "top_p": None,
        "repetition_penalty": None,
        "use_checkpoint_defaults": False,
    }
    assert back["max_length"] == 999 and back["stage"] == "sft"
    assert back["base_model"] == {"name": "tiny", "path": None, "started_from": "/base/model"}
    assert back["data"]["splits"] == {"sft_pool": {"n": 64, "sources": {"a": 40, "b": 24}}, "bench": {"n": 32}}
    assert back["recipe"]["sft"]["lr"] == cfg.sft.lr and "eval" not in back["recipe"]


def test_card_redacts_secrets_in_the_recipe(tmp_path):
    cfg = cfg_with("+reward.judge.api_key=sk-very-secret", "model.path=https://user:pw@example.org/m")
    card = judge_card(cfg, "rl", "/sft/model", PROCESSOR, DATA)
    text = json.dumps(card)
    assert "sk-very-secret" not in text and "user:pw" not in text
    assert card["recipe"]["reward"]["judge"]["api_key"] == "***"


def test_read_card_errors_name_the_file_and_field(tmp_path):
    assert read_card(tmp_path) is None  # not an egt judge: no card
    card = judge_card(cfg_with(), "sft", "/b", PROCESSOR, DATA)
    write_card(tmp_path, {**card, "card_version": 99})
    with pytest.raises(ValueError, match=rf"{CARD_FILE}: field 'card_version'"):
        read_card(tmp_path)
    write_card(tmp_path, {**card, "template": {**card["template"], "key": "minimal:0000000000"}})
    with pytest.raises(ValueError, match="field 'template'.*minimal:0000000000"):
        read_card(tmp_path)


def metrics_json(name: str, overall: float, debiased: float) -> dict:
    return {
        "key": f"key-{name}",
        "benchmark": {"name": name, "version": 2, "n_items": 10, "headline_key": "overall"},
        "eval_config": {"order": "both"},
        "metrics": {
            "headline": overall,
            "overall": overall,
            "order/debiased/overall": debiased,
            "order/position_consistency": 0.5,
            "parse_failure_rate": 0.1,
        },
    }


def test_model_card_numbers_are_the_eval_artifacts(tmp_path):
    write_card(tmp_path, judge_card(cfg_with(), "sft", "/b", PROCESSOR, DATA))
    text = write_model_card(tmp_path).read_text()
    assert "Not evaluated yet" in text and "| sft_pool | 64 | a: 40, b: 24 |" in text
    assert record_evaluation(tmp_path, metrics_json("synthetic", 0.375, 0.46875))
    assert record_evaluation(tmp_path, metrics_json("vl_rewardbench", 0.6, 0.55))
    assert record_evaluation(tmp_path, metrics_json("synthetic", 0.5, 0.25))  # re-evaluated: replaced
    text = (tmp_path / "README.md").read_text()
    rows = {
        m.group(1): m.group(2).split(" | ") for m in re.finditer(r"^\| (\w+) \| 10 \| both \| (.*) \|$", text, re.M)
    }
    assert rows == {
        "synthetic": ["50.00", "50.00", "25.00", "50.00", "10.00"],
        "vl_rewardbench": ["60.00", "60.00", "55.00", "50.00", "10.00"],
    }
    evals = json.loads((tmp_path / EVALS_FILE).read_text())
    assert evals["synthetic"]["metrics"] == {
        k: metrics_json("synthetic", 0.5, 0.25)["metrics"][k] for k, _ in CARD_METRICS
    }


def test_no_card_no_model_card(tmp_path):
    assert not record_evaluation(tmp_path, metrics_json("synthetic", 0.5, 0.5))
    assert not (tmp_path / "README.md").exists() and not (tmp_path / EVALS_FILE).exists()
