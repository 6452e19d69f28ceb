"""egt.components: every option of every component kind builds a subclass of its kind's base, with a
docstring and the base's call signature; built-in names need no list; errors name the key."""

import inspect
from pathlib import Path

import hydra.utils
import pytest
from omegaconf import OmegaConf

from egt.benchmarks import Benchmark, get, names
from egt.components import build, builtin, builtin_names
from egt.distill.teacher import Teacher
from egt.errors import ConfigError
from egt.rl.advantages import AdvantageEstimator
from egt.rl.filters import AdvantageFilter
from egt.rl.judges.base import LogicJudge
from egt.rl.losses import PolicyLoss
from egt.rl.rollout import RolloutBackend
from egt.select.curriculum import Curriculum
from egt.select.methods import Selection
from egt.select.scores import EntropyScore

CONF = Path(__file__).resolve().parents[2] / "conf"
# config group → (the key of the option's _target_ inside its file, the kind's base)
KINDS = {
    "entropy": ("score", EntropyScore),
    "selection": ("method", Selection),
    "curriculum": ("order", Curriculum),
    "rl/advantage": (None, AdvantageEstimator),
    "rl/filter": (None, AdvantageFilter),
    "rl/loss": (None, PolicyLoss),
    "rl/backend": (None, RolloutBackend),
    "reward/judge": (None, LogicJudge),
    "distill/teacher": (None, Teacher),
}


def _options():
    for group, (key, base) in KINDS.items():
        for f in sorted((CONF / group).glob("*.yaml")):
            node = OmegaConf.load(f)
            if f.read_text().startswith("# @package _global_"):  # e.g. selection=pass_rate also sets entropy
                node = node[group.replace("/", ".")]
            yield pytest.param(group, (node[key] if key else node)["_target_"], base, id=f"{group}={f.stem}")


def _abstract_methods(base):
    return [n for n in base.__abstractmethods__] if inspect.isabstract(base) else []


@pytest.mark.parametrize("group,target,base", list(_options()))
def test_every_option_is_a_documented_subclass_of_its_kind(group, target, base):
    cls = hydra.utils.get_class(target)
    assert issubclass(cls, base) and not inspect.isabstract(cls), f"{target} is not a concrete {base.__name__}"
    assert (cls.__doc__ or "").strip(), f"{target} has no docstring (formula, units, source)"
    for name in _abstract_methods(base):  # the call the rest of egt makes
        want = list(inspect.signature(getattr(base, name)).parameters)
        got = list(inspect.signature(getattr(cls, name)).parameters)
        assert got[: len(want)] == want, f"{target}.{name}{got} does not take {base.__name__}.{name}{want}"


def test_builtin_benchmarks_are_found_by_module_without_a_list():
    assert (
        builtin_names(Benchmark, "egt.benchmarks")
        == names()
        == ["mm_rlhf_rewardbench", "multimodal_rewardbench", "synthetic", "vl_rewardbench"]
    )
    assert builtin(Benchmark, "egt.benchmarks", "synthetic") is get("synthetic")
    with pytest.raises(ConfigError, match=r"eval.benchmarks: unknown Benchmark 'base'"):  # a module, not a benchmark
        builtin(Benchmark, "egt.benchmarks", "base", "eval.benchmarks")


def test_build_takes_a_name_a_name_with_arguments_or_a_target():
    by_name = build("synthetic", Benchmark, "eval.benchmarks", package="egt.benchmarks", limit=3)
    with_args = build({"name": "synthetic", "split": "rl_pool"}, Benchmark, "eval.benchmarks", package="egt.benchmarks")
    target = build(
        {"_target_": "egt.benchmarks.synthetic.SyntheticBench", "split": "sft_pool"},
        Benchmark,
        "eval.benchmarks",
        package="egt.benchmarks",
        limit=2,
    )
    assert (type(by_name), by_name.limit) == (get("synthetic"), 3)
    assert with_args.split == "rl_pool" and (target.split, target.limit) == ("sft_pool", 2)
    with pytest.raises(TypeError, match=r"rl.loss._target_ must build an egt.rl.losses.PolicyLoss"):
        build({"_target_": "egt.rl.advantages.GroupAdvantage"}, PolicyLoss, "rl.loss")
    with pytest.raises(ConfigError, match="rl.advantage is not set"):
        build(None, AdvantageEstimator, "rl.advantage")


@pytest.mark.parametrize("base,package", [(Benchmark, "egt.benchmarks"), ("DataFormat", "egt.data.formats")])
def test_every_builtin_named_component_is_a_documented_subclass(base, package):
    if isinstance(base, str):
        from egt.data.formats import DataFormat as base
    for name in builtin_names(base, package):
        cls = builtin(base, package, name)
        assert cls.name == name and (cls.__doc__ or "").strip(), f"{package}.{name}"
        for method in _abstract_methods(base):
            want = list(inspect.signature(getattr(base, method)).parameters)
            assert list(inspect.signature(getattr(cls, method)).parameters)[: len(want)] == want, f"{name}.{method}"


def test_a_components_own_config_error_is_raised_as_it_is():
    """Hydra wraps what a constructor raises; build hands a component's ConfigError on unwrapped."""
    node = OmegaConf.create({"_target_": "egt.rl.zero_variance.ZeroVarianceFilter", "max_tries": 0})
    with pytest.raises(ConfigError, match=r"^rl.filter.max_tries=0: write a whole number >= 1"):
        build(node, AdvantageFilter, "rl.filter")
