"""What the probe stage's artifact key covers: sampled draws depend on the batch and shard sizes."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.stages.probe import key_config

CONF = Path(__file__).resolve().parents[3] / "conf"


def _conf(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return key_config(compose("config", overrides=list(overrides)))


def test_greedy_probe_key_ignores_batch_and_shard_sizes():
    assert _conf("probe.batch_size=4") == _conf("probe.batch_size=32", "probe.shard_size=16")
    assert "batch_size" not in _conf()


def test_sampled_probe_key_holds_batch_and_shard_sizes():
    sampled = ("probe.n=4", "probe.temperature=1.0")
    assert _conf(*sampled, "probe.batch_size=4") != _conf(*sampled, "probe.batch_size=32")
    assert _conf(*sampled, "probe.shard_size=16") != _conf(*sampled, "probe.shard_size=256")
    assert _conf(*sampled)["seed"] == 0 and _conf(*sampled, "seed=3")["seed"] == 3
    assert _conf("model.max_pixels=1003520")["max_pixels"] == 1003520  # the pixel budget is in the key


def test_both_orders_is_in_the_key_only_when_true():
    assert "both_orders" not in _conf() and _conf("probe.both_orders=false") == _conf()
    assert _conf("probe.both_orders=true")["both_orders"] is True


def test_answer_probs_is_in_the_key_only_when_true():
    """The existing probe keys (greedy and sampled) stay what they were when the option is off."""
    for probe in ((), ("probe.n=4", "probe.temperature=1.0")):
        assert "answer_probs" not in _conf(*probe) and _conf(*probe, "probe.answer_probs=false") == _conf(*probe)
        assert _conf(*probe, "probe.answer_probs=true") == {**_conf(*probe), "answer_probs": True}


def test_entropy_from_is_in_the_key_only_when_not_the_default():
    assert "entropy_from" not in _conf() and _conf("probe.entropy_from=teacher_forced") == _conf()
    assert _conf("probe.entropy_from=generate")["entropy_from"] == "generate"


def test_a_half_precision_probe_names_its_fp32_head_and_fp32_keys_stay():
    assert "entropy_head" not in _conf() and "entropy_head" not in _conf("model.dtype=float32")
    assert _conf("model.dtype=bfloat16")["entropy_head"] == "fp32"  # its entropies changed with the fp32 head
    assert "entropy_head" not in _conf("model.dtype=bfloat16", "probe.entropy_from=generate")  # generate's own logits


def test_decode_is_in_the_key_only_when_not_dynamic():
    """probe.generation.decode=dynamic (the default) leaves the key byte-for-byte what it was before the setting
    existed (hashes computed at 57bf436, the commit before it); static and compiled are in it."""
    from egt.artifacts import make_key
    from egt.stages.probe import VERSION

    def key(*overrides):
        return make_key("probe", _conf(*overrides), upstream={"data": "d", "model": "m"}, version=VERSION)

    assert "decode" not in _conf()["generation"] and _conf("probe.generation.decode=dynamic") == _conf()
    assert key() == "978c5f605fb9"
    assert key("probe.n=4", "probe.temperature=1.0") == "ee1ed899875e"
    assert key("probe.entropy_from=generate", "model.dtype=bfloat16") == "fbb5aa07d027"
    for mode in ("static", "compiled"):
        assert _conf(f"probe.generation.decode={mode}")["generation"]["decode"] == mode
