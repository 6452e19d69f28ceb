"""What the eval stage's artifact key covers: batch size never (sampled draws come from per-(view, vote)
streams); sampled keys name those streams, greedy keys are what they were."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.config import to_container
from egt.data.prompt import template_key
from egt.stages.eval import NOT_IN_KEY, key_conf

CONF = Path(__file__).resolve().parents[3] / "conf"


class StubBench:
    def describe(self):
        return {"name": "stub", "version": 1, "files": ["a"]}

    def fingerprint(self):
        return "fp"


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_greedy_eval_key_is_unchanged_and_ignores_batch_size():
    cfg = _cfg("eval.batch_size=4")
    before = {k: v for k, v in to_container(cfg.eval).items() if k not in NOT_IN_KEY}  # the earlier formula
    before["template"] = template_key(cfg.data.template)
    del before["generation"]["decode"]  # newer than the formula: in the key only when not dynamic
    assert key_conf(cfg, StubBench()) == {
        "benchmark": {"name": "stub", "version": 1},
        "fingerprint": "fp",
        "settings": before,
    }
    assert key_conf(cfg, StubBench()) == key_conf(_cfg("eval.batch_size=32"), StubBench())


def test_sampled_eval_key_names_its_streams_not_the_batch_size():
    sampled = ("eval.temperature=1.0", "eval.votes=4")
    conf = key_conf(_cfg(*sampled, "eval.batch_size=4"), StubBench())
    assert conf["settings"]["sampling_streams"] == "per-view-vote"  # draws differ from the batch-seeded ones
    assert conf == key_conf(_cfg(*sampled, "eval.batch_size=32"), StubBench())


def test_decode_is_in_the_key_only_when_not_dynamic():
    """eval.generation.decode=dynamic keeps the key byte-for-byte (hashes computed at 57bf436, before the setting)."""
    from egt.artifacts import make_key
    from egt.stages.eval import VERSION

    def key(*overrides):
        return make_key("eval", key_conf(_cfg(*overrides), StubBench()), upstream={"model": "m"}, version=VERSION)

    assert key() == key("eval.generation.decode=dynamic") == "2dfc4ffd3d74"
    assert key("eval.temperature=1.0", "eval.votes=4") == "312f6273bdff"
    for mode in ("static", "compiled"):
        conf = key_conf(_cfg(f"eval.generation.decode={mode}"), StubBench())
        assert conf["settings"]["generation"]["decode"] == mode and key(f"eval.generation.decode={mode}") != key()
