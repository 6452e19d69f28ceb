"""The config's choice fields, each a str-valued Enum in the schema (egt.config).

Hydra refuses a value outside the set when it composes, before any work, with the key and the allowed
values: ``Invalid value 'bf16', expected one of [float32, bfloat16, float16] … full_key: model.dtype``.
Where the values are read they are still strings: ``== "x"``, dict look-ups, ``json.dumps``, ``str()``
and f-strings give the value, and egt.config.to_container turns them into plain ``str``, so artifact
keys, logged configs and results files hold the same text as when these fields were typed ``str``.

OmegaConf reads a YAML or command-line value as a member's *name*, so every name is its value
(tests/test_configs.py checks that, and that each set is what the code behind it implements).
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string from a fixed set. ``str()`` and ``format()`` give the value, as ``enum.StrEnum``
    (Python 3.11+) does; a plain ``(str, Enum)`` gives ``Dtype.float32`` there from 3.12 on."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


class Dtype(Choice):
    """model.dtype: the weights' torch dtype (egt.models.loader.DTYPES)."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Attention(Choice):
    """model.attn_implementation; ``auto`` is flash_attention_2 with CUDA and flash-attn 2, else sdpa;
    ``egt_varlen`` is packed varlen attention (egt.models.attention) with CUDA and a varlen kernel, else sdpa
    (egt.models.resolve.resolve_attn)."""

    auto = "auto"
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"
    egt_varlen = "egt_varlen"


class BuildKind(Choice):
    """model.build.kind: which offline-built model (egt.stages.model.BUILD_KINDS)."""

    world = "world"
    qwen2_5_vl_replica = "qwen2_5_vl_replica"


class Template(Choice):
    """data.template: the judge prompt (egt.data.prompt.TEMPLATES)."""

    minimal = "minimal"
    short = "short"
    r1_reward = "r1_reward"
    r1_reward_legacy = "r1_reward_legacy"


class OnBadSample(Choice):
    """data.on_bad_sample / eval.on_bad_sample: stop at the first bad sample, or skip and count it."""

    error = "error"
    skip = "skip"


class LossReduction(Choice):
    """sft.loss_reduction (egt.sft.loss.REDUCTIONS)."""

    token = "token"
    sequence = "sequence"


class Band(Choice):
    """selection.band: which part of the entropy ranking is kept (paper Table 5)."""

    low = "low"
    mid = "mid"
    high = "high"


class EvalOrder(Choice):
    """eval.order: each pair in both response orders, or only the authors' order."""

    both = "both"
    official = "official"


class KLEstimator(Choice):
    """rl.kl_estimator (egt.rl.functional.KL_ESTIMATORS)."""

    k1 = "k1"
    k3 = "k3"


class KLIn(Choice):
    """rl.kl_in: the KL term in the loss or subtracted from the reward."""

    loss = "loss"
    reward = "reward"


class Backend(Choice):
    """distributed.backend: ``auto`` is nccl on GPU, gloo on CPU."""

    auto = "auto"
    nccl = "nccl"
    gloo = "gloo"


class EntropyFrom(Choice):
    """probe.entropy_from: where the probe's token entropies come from (egt.probe.probe.ENTROPY_FROM)."""

    teacher_forced = "teacher_forced"
    generate = "generate"


class Decode(Choice):
    """probe.generation.decode, eval.generation.decode: the KV cache generate decodes with
    (egt.eval.generation.DECODE): dynamic (transformers' default), static (a preallocated cache), compiled
    (static + torch.compile of the one-token decode step)."""

    dynamic = "dynamic"
    static = "static"
    compiled = "compiled"


class RFTKeep(Choice):
    """rft.keep: which correct draws of a sample become trajectories (egt.sft.rejection.KEEP_RULES)."""

    first = "first"
    all = "all"


# rl.shared_prompt_pass takes a bool or one of these, so it is no Choice (OmegaConf types a field one way):
# egt.config.validation checks it with shared_prompt_mode, which egt.rl.rollout reads it by.
SHARED_PROMPT_MODES = ("cache", "packed")


def shared_prompt_mode(value: object) -> str | None:
    """``rl.shared_prompt_pass`` as a mode: ``"cache"`` (also ``true``, the default since 247d401),
    ``"packed"``, or None (``false``: every row whole). Raises ValueError naming the key otherwise."""
    if value is True:
        return "cache"
    if value is False or value is None:
        return None
    if isinstance(value, str) and value in SHARED_PROMPT_MODES:
        return value
    raise ValueError(
        f"rl.shared_prompt_pass={value!r}: write one of true (= cache), false (every row whole), cache, packed"
    )
