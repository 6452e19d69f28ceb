"""Every option of every config group composes against the typed schema and validates; every
``_target_`` it holds resolves to a callable that takes its arguments, and is built where that is
cheap and offline; a choice field (egt.choices) refuses a value outside its set at compose time."""

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import hydra.utils
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ValidationError

import egt.config  # noqa: F401  (registers the schema)
from egt import choices
from egt.artifacts import make_key
from egt.cli import rewrite_model_path_args
from egt.config import ConfigError, EgtConfig, _schema_class, to_container, validate
from egt.utils.secrets import config_container

CONF = Path(__file__).resolve().parents[1] / "conf"
# groups whose options need something from the user (a local model path)
NEEDS_PATH = {("model", "local"), ("model", "qwen2_5_vl_7b")}
# outside data needs a teacher that reads it (the synthetic one writes from the synthetic world's scenes)
TEACHER = ["distill/teacher=openai", "distill.teacher.base_url=http://127.0.0.1:8000/v1", "distill.teacher.model=m"]
NEEDS_ARGS = {
    ("distill/teacher", "openai"): TEACHER[1:],
    ("data", "preference_files"): TEACHER,
    ("distill/teacher", "hf"): ["distill.teacher.model_path=/models/vlm"],
    # the data stage's paths must exist (egt.preflight): the release's layout in the fixtures
    ("data", "r1_reward_rl"): [f"data.path={CONF.parent / 'tests' / 'fixtures' / 'r1_reward_rl'}", *TEACHER],
    ("entropy", "answer_debiased"): ["probe.both_orders=true"],
    ("selection", "pass_rate"): ["probe.n=8", "probe.temperature=1.0"],
    ("method", "difficulty_prior"): ["rl.epochs=2", "rl.max_steps=4"],  # stage 1 is half of a budget in updates
    ("selection", "bis"): ["probe.n=8", "probe.temperature=1.0", "probe.answer_probs=true"],
    ("selection", "confident_learning"): ["probe.answer_probs=true"],
    ("curriculum", "two_stage"): ["selection=pass_rate", "probe.n=8", "probe.temperature=1.0", "rl.epochs=2"],
}


def options():
    for group_dir in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = group_dir.relative_to(CONF).as_posix()
        for f in sorted(group_dir.glob("*.yaml")):
            yield group, f.stem


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("group,option", list(options()), ids=lambda x: str(x))
def test_every_option_composes_and_validates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if (group, option) in NEEDS_PATH:
        overrides.append(f"model.path={tmp_path}")
    cfg = _compose(overrides + NEEDS_ARGS.get((group, option), []))
    OmegaConf.resolve(cfg)
    validate(cfg)
    for where, node in targets(cfg):
        check_target(where, node, tmp_path)


# Resolved and their arguments bound, never built: DeepSpeed needs its package and CUDA, a wandb logger
# starts wandb. Everything else is built, with these arguments where the YAML asks the user (???) or
# the constructor reads a directory.
NOT_BUILT = {"lightning.pytorch.strategies.DeepSpeedStrategy", "lightning.pytorch.loggers.WandbLogger"}
BUILD_WITH = {"egt.distill.hf_teacher.HFTeacher": "model_path", "egt.rl.judges.hf.HFJudge": "model_path"}
_built: set[str] = set()  # nodes already checked in this process (most options share the defaults' targets)


def targets(node, where=""):
    """(key, node) for every node with a ``_target_`` in a config tree, nested ones too."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield where or "<root>", node
        for key in node:
            if not OmegaConf.is_missing(node, key):
                yield from targets(node[key], f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from targets(item, f"{where}[{i}]")


def check_target(where: str, node: DictConfig, tmp_path: Path) -> None:
    """``node._target_`` imports and is callable, its signature takes the node's keys, and (unless in
    NOT_BUILT) hydra.utils.instantiate builds it, as the stages do."""
    target = str(node._target_)
    seen = f"{where}:{json.dumps(OmegaConf.to_container(node, enum_to_str=True), sort_keys=True, default=str)}"
    if seen in _built:
        return
    try:
        fn = hydra.utils.get_method(target)
    except Exception as e:
        pytest.fail(f"{where}._target_={target} does not import: {e}")
    kwargs = {str(k): None for k in node if not str(k).startswith("_")}
    try:
        inspect.signature(fn).bind_partial(*node.get("_args_", []), **kwargs)
    except TypeError as e:
        pytest.fail(f"{where}: {target} does not take the arguments {sorted(kwargs)}: {e}")
    extra = {}
    if target in BUILD_WITH:
        model = tmp_path / "model"
        model.mkdir(exist_ok=True)
        (model / "config.json").write_text("{}")
        extra[BUILD_WITH[target]] = str(model)
    missing = {k.removeprefix(f"{where}.") for k in OmegaConf.missing_keys(node)}  # full keys: drop `where.`
    if target not in NOT_BUILT and not missing - set(extra):
        obj = hydra.utils.instantiate(node, **extra)
        assert obj is not None and (not isinstance(fn, type) or isinstance(obj, fn)), (where, target, obj)
    _built.add(seen)


def test_hydra_callbacks_resolve_and_build(tmp_path):
    callbacks = OmegaConf.load(CONF / "config.yaml").hydra.callbacks
    for name in callbacks:
        check_target(f"hydra.callbacks.{name}", callbacks[name], tmp_path)


def test_a_misspelt_target_or_argument_fails(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="does not import"):
        check_target("rl.loss", OmegaConf.create({"_target_": "egt.rl.losses.PPOClipLos"}), tmp_path)
    with pytest.raises(pytest.fail.Exception, match="clip_epss"):
        check_target("rl.loss", OmegaConf.create({"_target_": "egt.rl.losses.PPOClipLoss", "clip_epss": 0.2}), tmp_path)


def test_default_is_demo_model_on_cpu_with_offline_wandb():
    cfg = _compose([])
    assert cfg.model.name == "demo" and cfg.trainer.accelerator == "cpu"
    assert cfg.logger.offline is True and cfg.model.trust_remote_code is False


def test_misspelt_key_fails_at_compose():
    with pytest.raises(Exception, match="lrr"):
        _compose(["sft.lrr=1e-3"])


def test_wrong_type_fails_at_compose():
    with pytest.raises(Exception, match="batch_size"):
        _compose(["sft.batch_size=many"])


@pytest.mark.parametrize(
    "override,msg",
    [
        ("stages=[data,distil]", "Did you mean 'distill'"),
        ("sft.val_fraction=1.5", "val_fraction"),
        ("distill.concurrency=0", "requests in flight"),
        ("distill/teacher=openai", "needs distill.teacher.base_url=…, distill.teacher.model=…"),
        ("trainer.precision=bf16-mixed", "28x slower"),
        ("trainer.devices=2", "one process"),
        (
            "selection=pass_rate",
            "selection=pass_rate needs at least 8 sampled probe outputs per sample: write "
            "probe.n=8 probe.temperature=1.0",
        ),
    ],
)
def test_validation_says_what_to_write(override, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_compose([override]))


def test_the_synthetic_teacher_on_outside_data_is_refused_before_any_stage(tmp_path):
    """It writes from the synthetic world's scenes: on outside data its distill stage would fail at the first
    sample, after the data stage. Refused only where that stage runs."""
    (tmp_path / "pairs.jsonl").write_text("")
    data = ["data=preference_files", f"data.sources.sft_pool=[{{path: {tmp_path / 'pairs.jsonl'}}}]"]
    with pytest.raises(
        ConfigError, match=r"writes only for data=world, not data=preference_files: give a real teacher"
    ):
        validate(_compose(data))
    for accepted in (
        ["stages=[data]"],
        ["distill.trajectories_path=" + str(tmp_path / "pairs.jsonl")],
        [f"sft.model_path={tmp_path}"],  # SFT replaced: the pipeline skips distill (egt.stages.distill.unused)
        TEACHER,
    ):
        validate(_compose(data + accepted))


# every choice field of the schema, with the Enum that holds its values
CHOICE_FIELDS = {
    "model.dtype": choices.Dtype,
    "model.attn_implementation": choices.Attention,
    "model.build.kind": choices.BuildKind,
    "data.template": choices.Template,
    "data.on_bad_sample": choices.OnBadSample,
    "eval.on_bad_sample": choices.OnBadSample,
    "sft.loss_reduction": choices.LossReduction,
    "selection.band": choices.Band,
    "eval.order": choices.EvalOrder,
    "rl.kl_estimator": choices.KLEstimator,
    "rl.kl_in": choices.KLIn,
    "distributed.backend": choices.Backend,
    "probe.entropy_from": choices.EntropyFrom,
    "probe.generation.decode": choices.Decode,
    "eval.generation.decode": choices.Decode,
    "rft.keep": choices.RFTKeep,
}


@pytest.fixture(scope="module")
def schema():
    return OmegaConf.structured(EgtConfig)


@pytest.mark.parametrize("key", sorted(CHOICE_FIELDS))
def test_a_value_outside_a_choice_fails_at_compose(key, schema):
    """The schema refuses it on merge (a YAML file or a command-line override), naming key and values."""
    allowed = ", ".join(m.value for m in CHOICE_FIELDS[key])
    with pytest.raises(ValidationError, match=rf"(?s)expected one of \[{allowed}\].*full_key: {key}"):
        OmegaConf.merge(schema, OmegaConf.from_dotlist([f"{key}=nonsense"]))
    for value in CHOICE_FIELDS[key]:  # every allowed value, written as a string
        OmegaConf.merge(schema, OmegaConf.from_dotlist([f"{key}={value.value}"]))


def test_hydra_rejects_a_bad_choice_on_the_command_line():
    with pytest.raises(Exception) as e:
        _compose(["model.dtype=bf16"])
    msg = f"{e.value}\n{e.value.__cause__}"
    assert "full_key: model.dtype" in msg and "expected one of [float32, bfloat16, float16]" in msg


def test_every_choice_field_is_listed():
    def fields(schema, where=""):
        for f in dataclasses.fields(schema):
            tp = typing.get_type_hints(schema)[f.name]
            sub = _schema_class(tp)
            if sub is not None:
                yield from fields(sub, f"{where}{f.name}.")
            elif isinstance(tp, type) and issubclass(tp, choices.Choice):
                yield f"{where}{f.name}", tp

    assert dict(fields(EgtConfig)) == CHOICE_FIELDS


def test_choices_are_what_the_code_implements():
    from egt.data.prompt import TEMPLATES
    from egt.models.loader import DTYPES
    from egt.stages.model import BUILD_KINDS
    from egt.probe.probe import ENTROPY_FROM
    from egt.eval.generation import DECODE
    from egt.rl.functional import KL_ESTIMATORS
    from egt.select.selection import band_window
    from egt.sft.loss import REDUCTIONS
    from egt.sft.rejection import KEEP_RULES

    for enum in set(CHOICE_FIELDS.values()):
        assert all(m.name == m.value for m in enum), enum  # OmegaConf reads a value by the member's name
    assert set(choices.Dtype) == set(DTYPES) and set(choices.Template) == set(TEMPLATES)
    assert set(choices.BuildKind) == set(BUILD_KINDS) and set(choices.KLEstimator) == set(KL_ESTIMATORS)
    assert set(choices.LossReduction) == set(REDUCTIONS) and set(choices.EntropyFrom) == set(ENTROPY_FROM)
    assert set(choices.RFTKeep) == set(KEEP_RULES) and set(choices.Decode) == set(DECODE)
    for band in choices.Band:
        band_window(10, 4, band)


def test_choice_values_read_as_the_same_strings():
    """What stages compare, hash into artifact keys, log and write is the text it was as a str field."""
    cfg = _compose(["model.dtype=bfloat16", "rl.kl_in=reward", "selection.band=mid"])
    d = cfg.model.dtype
    assert d == "bfloat16" and str(d) == f"{d}" == "bfloat16" and json.dumps(d) == '"bfloat16"'
    assert {"bfloat16": 1}[d] == 1 and "bfloat16" in {d}
    assert make_key("sft", {"dtype": d, "kl_in": cfg.rl.kl_in}) == make_key(
        "sft", {"dtype": "bfloat16", "kl_in": "reward"}
    )
    for plain in (to_container(cfg), config_container(cfg)):
        assert type(plain["model"]["dtype"]) is str and type(plain["selection"]["band"]) is str
        assert plain["selection"]["band"] == "mid"
    assert "dtype: bfloat16" in OmegaConf.to_yaml(cfg.model)


def test_model_that_needs_a_path_says_so():
    with pytest.raises(ConfigError, match="model.path"):
        validate(_compose(["model=qwen2_5_vl_7b"]))
    with pytest.raises(ConfigError, match="model.path=/no/such/dir does not exist"):
        validate(_compose(["model=local", "model.path=/no/such/dir"]))


def test_model_dir_shorthand():
    assert rewrite_model_path_args(["t", "model=/m/qwen", "sft.lr=1"]) == [
        "t",
        "model=local",
        "model.path=/m/qwen",
        "sft.lr=1",
    ]
    assert rewrite_model_path_args(["t", "model=demo"]) == ["t", "model=demo"]


# experiment=paper names the 7B model: it needs model.path too
NEEDS_PATH.add(("experiment", "paper"))
NEEDS_ARGS[("experiment", "paper")] = NEEDS_ARGS[("data", "r1_reward_rl")]  # its RL pool is R1-Reward's


@pytest.mark.parametrize(
    "overrides,msg",
    [
        (["trainer.devices=0"], "number of devices per node"),
        (["trainer=deepspeed_zero2", "trainer.accelerator=cpu"], "CUDA GPUs only"),
        (["trainer=ddp", "trainer.devices=4"], "python -m torch.distributed.run --nproc_per_node=4"),
    ],
)
def test_scale_validation_says_what_to_write(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        validate(_compose(overrides))


def test_a_strategy_the_training_stages_cannot_build_is_refused_before_any_stage(monkeypatch, tmp_path):
    """The strategy's class is resolved at validation, not at the SFT stage after data and distill ran: one
    that does not import, DeepSpeed without DeepSpeed installed, Lightning's DeepSpeed (CUDA only) where
    ``auto`` means the CPU; a subclass without the CUDA check (tests/helpers/deepspeed_cpu.py) and runs with
    no training stage pass."""
    import importlib.util

    import torch

    with pytest.raises(ConfigError, match="trainer.strategy._target_=no_such.Strategy cannot be imported"):
        validate(_compose(["trainer=deepspeed_zero2", "trainer.strategy._target_=no_such.Strategy"]))
    validate(
        _compose(["trainer=deepspeed_zero2", "trainer.strategy._target_=no_such.Strategy", "stages=[data,distill]"])
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA GPUs only .*trainer.accelerator=auto"):
        validate(_compose(["trainer=deepspeed_zero3", "trainer.accelerator=auto"]))
    with pytest.raises(ConfigError, match="CUDA GPUs only"):
        validate(_compose(["trainer.strategy=deepspeed_stage_2"]))  # Lightning's registry name
    # a probe or eval of models trained under DeepSpeed names the trainer to find their artifacts: not refused
    for no_training in (
        ["stages=[data]"],
        ["stages=[probe,eval]"],
        ["stages=[sft,eval]", f"sft.model_path={tmp_path}"],
    ):
        validate(
            _compose(["trainer=deepspeed_zero3", "trainer.accelerator=cpu", "trainer.precision=32-true", *no_training])
        )
    if importlib.util.find_spec("deepspeed") is not None:  # egt[test] installs it
        validate(_compose(["trainer=deepspeed_zero3", "trainer.accelerator=cpu", *DEEPSPEED_CPU]))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match=r"needs DeepSpeed, which is not installed: pip install 'egt\[gpu\]'"):
        validate(_compose(["trainer=deepspeed_zero3", "trainer.accelerator=gpu"]))
    validate(_compose(["trainer=deepspeed_zero3", "trainer.accelerator=gpu", "stages=[probe,eval]"]))


DEEPSPEED_CPU = ["trainer.precision=32-true", "trainer.strategy._target_=deepspeed_cpu.DeepSpeedCPUStrategy"]


def test_experiment_paper_holds_the_papers_settings(tmp_path):
    with pytest.raises(ConfigError, match="data=r1_reward_rl needs data.path"):  # never the synthetic world
        validate(_compose(["experiment=paper", f"model.path={tmp_path}"]))
    with pytest.raises(ConfigError, match="writes only for data=world, not data=r1_reward_rl: give a real teacher"):
        validate(_compose(["experiment=paper", f"model.path={tmp_path}", f"data.path={tmp_path}"]))
    cfg = _compose(["experiment=paper", f"model.path={tmp_path}", f"data.path={tmp_path}", *TEACHER])
    validate(cfg)
    assert cfg.data.name == "r1_reward_rl" and cfg.data.sources.rl_pool[0].format == "r1_reward_rl"
    assert cfg.model.max_pixels == 1003520 and cfg.data.decontaminate
    assert cfg.model.name == "qwen2_5_vl_7b" and cfg.model.dtype == "bfloat16" and cfg.model.gradient_checkpointing
    assert cfg.trainer.strategy.stage == 3 and cfg.trainer.precision == "bf16-mixed"
    s = cfg.sft
    assert (s.epochs, s.batch_size * s.accumulate_grad_batches, s.lr) == (1, 256, 1e-5)
    r = cfg.rl
    assert (r.name, r.epochs, r.batch_size, r.lr, r.kl_coef) == ("stable_reinforce", 20, 224, 1e-6, 1e-3)
    assert (cfg.selection.k, cfg.curriculum.name, cfg.entropy.name) == (2500, "ascending", "answer")
    for gpus in (8, 4):  # global batches split evenly over the GPUs it expects
        assert s.batch_size % gpus == 0 and r.batch_size % gpus == 0
    assert "hydra" not in OmegaConf.load(CONF / "experiment" / "paper.yaml")  # combinable with table sweeps


# ------------------------------------------------------------------ each default written once
def _schema_leaves(schema=EgtConfig, where=""):
    """(dotted key, dataclasses.Field) of every schema leaf (a field whose type is not a schema class)."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        sub = _schema_class(hints[f.name])
        if sub is not None:
            yield from _schema_leaves(sub, f"{where}{f.name}.")
        else:
            yield f"{where}{f.name}", f


def _set_keys(node, where=""):
    """Every dotted key a composed config sets, and every prefix of one."""
    for k in node.keys():
        yield f"{where}{k}"
        if not OmegaConf.is_missing(node, k) and isinstance(node._get_node(k), DictConfig) and node[k] is not None:
            yield from _set_keys(node[k], f"{where}{k}.")


@pytest.fixture(scope="module")
def yaml_only(tmp_path_factory):
    """The default config composed from the YAML files alone (conf/config.yaml without the schema)."""
    import shutil

    conf = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(CONF, conf)
    (conf / "config.yaml").write_text((conf / "config.yaml").read_text().replace("  - egt_schema\n", "", 1))
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return set(_set_keys(compose("config")))


def test_each_default_is_written_once(yaml_only):
    """A key the default YAML files set has no default in the schema (MISSING: the schema only types it),
    and a key they leave out takes the schema's: a reader finds each default value in one place."""
    twice = [
        key
        for key, f in _schema_leaves()
        if key in yaml_only
        and (
            f.default is not dataclasses.MISSING and f.default != "???" or f.default_factory is not dataclasses.MISSING
        )
    ]
    assert not twice, f"defaults in both egt/config/schema.py and conf/: {twice} (make the schema's MISSING)"
    missing = sorted(OmegaConf.missing_keys(_compose([])))
    assert not missing, f"the default config leaves {missing} unset"


def test_the_schema_types_every_key_the_default_yaml_sets(yaml_only):
    leaves = {key for key, _ in _schema_leaves()}
    sections = {key.rsplit(".", 1)[0] for key in leaves if "." in key}
    untyped = sorted(
        k
        for k in yaml_only
        if k not in leaves
        and k not in sections
        and k.split(".")[0] in sections
        and not any(k.startswith(f"{leaf}.") for leaf in leaves)
    )
    assert not untyped, f"keys in conf/ that the schema does not define: {untyped}"


def test_pass_rate_orders_by_difficulty_unless_told_otherwise():
    assert _compose(["selection=pass_rate", "probe.n=8", "probe.temperature=1.0"]).entropy.name == "difficulty"
    assert _compose(["selection=pass_rate", "entropy=answer"]).entropy.name == "answer"  # the command line wins
