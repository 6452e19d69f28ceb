"""The beyond-the-paper entropy scores (issue #20) on hand-made probe tables, and what they need."""

import math
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from egt.config import ConfigError, validate
from egt.select.scores import DebiasedAnswerEntropy, MissingColumnError, SentenceFallbackEntropy

CONF = Path(__file__).resolve().parents[3] / "conf"
INF, NAN = math.inf, math.nan


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_sentence_fallback_uses_reasoning_else_the_answer_token():
    t = pd.DataFrame(
        {
            "id": list("abcd"),
            "reasoning_entropy": [0.40, NAN, 0.0, NAN],
            "answer_entropy": [0.01, 0.25, 0.9, INF],
            "sentence_entropy": [0.3, 0.2, 0.1, 0.5],
        }
    )  # never read
    assert SentenceFallbackEntropy()(t).tolist() == [0.40, 0.25, 0.0, INF]


def test_debiased_is_the_mean_of_both_orders_and_inf_if_either_has_no_answer():
    t = pd.DataFrame({"answer_entropy": [0.1, 0.6, INF, 0.2, INF], "answer_entropy_swapped": [0.3, 0.0, 0.5, INF, INF]})
    assert DebiasedAnswerEntropy()(t).tolist() == pytest.approx([0.2, 0.3, INF, INF, INF])


def test_missing_columns_say_how_to_get_them():
    old = pd.DataFrame({"answer_entropy": [0.1], "sentence_entropy": [0.2]})  # a probe table from before
    with pytest.raises(MissingColumnError, match="'reasoning_entropy'.*re-run the probe stage"):
        SentenceFallbackEntropy()(old)
    with pytest.raises(MissingColumnError, match="'answer_entropy_swapped'.*probe.both_orders=true"):
        DebiasedAnswerEntropy()(old)


def test_config_options_and_validation(tmp_path):
    cfg = _compose("entropy=sentence_fallback")
    validate(cfg)
    assert isinstance(instantiate(cfg.entropy.score), SentenceFallbackEntropy)
    with pytest.raises(ConfigError, match="write entropy=answer_debiased probe.both_orders=true"):
        validate(_compose("entropy=answer_debiased"))
    cfg = _compose("entropy=answer_debiased", "probe.both_orders=true")
    validate(cfg)
    assert isinstance(instantiate(cfg.entropy.score), DebiasedAnswerEntropy)
    table = tmp_path / "probe.parquet"
    table.touch()  # validate checks that an outside table exists (egt.preflight), not its columns
    validate(_compose("entropy=answer_debiased", f"probe.table_path={table}"))  # the score checks them
