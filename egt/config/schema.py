"""Typed config schemas (Hydra ConfigStore): one dataclass per config group.

The YAML files under ``conf/`` fill these schemas; ``conf/config.yaml`` lists ``egt_schema`` first in its
defaults, so a misspelt key, a wrong type or a value outside a choice field's set (an Enum of egt.choices)
fails at compose time, before any heavy work. What a type cannot express is checked by
:mod:`egt.config.validation`.

Each default value is written once: a key that the default config's YAML files set is ``MISSING``
here (the schema only types it; its value and its comment for users are in ``conf/``), and a key they
leave out takes the default written here (``tests/test_configs.py::test_each_default_is_written_once``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from egt.errors import ConfigError  # noqa: F401  (re-exported: egt.config.ConfigError)
from egt.utils.conf import to_container  # noqa: F401  (re-exported)
from egt.choices import (
    Attention,
    Backend,
    Band,
    BuildKind,
    Dtype,
    Decode,
    EntropyFrom,
    EvalOrder,
    KLEstimator,
    KLIn,
    LossReduction,
    OnBadSample,
    RFTKeep,
    Template,
)

from egt.stages import DEFAULT_STAGES  # the one stage list; report: python -m egt.report


@dataclass
class PathsConfig:
    artifacts: str = MISSING  # content-addressed stage outputs, shared across runs
    logs: str = MISSING  # wandb / csv logger files
    keep_checkpoints: bool = MISSING  # a finished sft/rft/rl artifact keeps checkpoints/ (resume state only)


@dataclass
class BuildConfig:
    """Shape of an offline-built random Qwen2.5-VL; see egt.models.builder (kind ``world``: a BPE trained
    on the synthetic world, tiny/demo) and egt.models.replica (kind ``qwen2_5_vl_replica``: the real
    Qwen2.5 tokenizer and the files of a Qwen2.5-VL-7B-Instruct download)."""

    kind: BuildKind = BuildKind.world
    hidden_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    intermediate_size: int = MISSING
    vision_depth: int = MISSING
    vision_hidden_size: int = MISSING
    vision_heads: int = MISSING
    vocab_size: int = MISSING
    tie_word_embeddings: bool = MISSING  # untied as in Qwen2.5-VL-7B (see TinyVLMSpec)
    seed: int = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    path: Optional[str] = MISSING  # a local HF VLM directory; None → built offline from `build`
    build: Optional[BuildConfig] = None
    dtype: Dtype = MISSING
    attn_implementation: Attention = MISSING
    trust_remote_code: bool = False
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    # Liger's fused RMSNorm + SwiGLU Triton kernels in the SFT / RL models (egt.models.liger; CUDA, pip
    # install egt[liger]) and its fused linear cross-entropy in the SFT loss (egt.sft.loss); in the SFT, rft
    # and RL keys only when true
    liger: bool = False
    # pixel budget of every image, in pixels (null: the checkpoint's preprocessor_config.json; Qwen2.5-VL
    # ships 3,136 / 12,845,056, so a 2240×2240 image is 6,400 tokens; R1-Reward's inference uses
    # max_pixels=1003520 → 1,225). Reaches the processor in every stage and every artifact key.
    min_pixels: Optional[int] = None
    max_pixels: Optional[int] = None


@dataclass
class DataConfig:
    name: str = MISSING
    # The synthetic world (egt.data.world.WorldConfig fields); loaders of public
    # data sets take their own keys here.
    world: dict = MISSING
    # Outside preference data (data=preference_files, data=r1_reward_rl; egt.data.sources): per split
    # (sft_pool, rl_pool, bench) a list of {path, format, name, columns, image_root, split, limit}.
    sources: dict = field(default_factory=dict)
    path: Optional[str] = None  # data=r1_reward_rl: the release's folder or file
    image_root: Optional[str] = None  # where relative image paths are resolved (a source's own wins)
    seed: int = 0  # response-order randomisation of outside data (the world uses data.world.seed)
    # training-pool samples that are items of these benchmarks (read from eval.data_root) are dropped
    # (decontaminate=true) or only counted (false); egt.data.decontam
    decontaminate: bool = True
    deduplicate: bool = True  # repeated pairs inside a pool, and SFT pairs that are also in the RL pool, dropped
    contamination_benchmarks: list = field(
        default_factory=lambda: ["vl_rewardbench", "multimodal_rewardbench", "mm_rlhf_rewardbench"]
    )
    on_bad_sample: OnBadSample = MISSING
    randomize_order: bool = MISSING
    template: Template = MISSING  # the judge prompt
    # a difficulty hint appended to the prompt of RL's hard samples in stage 2 of curriculum=two_stage (null:
    # none); never in evaluation, probing or SFT prompts. In the RL key only when set (not the data key)
    hints: Optional[str] = MISSING
    # per training pool, each source's share: {sft_pool: {weights: {name: w}, counts: {name: n}, size: N}}
    # (egt.data.mixture); unset = every kept row once. In the data key only when set.
    mix: dict = field(default_factory=dict)
    num_proc: int = 1  # processes reading / converting each outside source (never in the data key)


@dataclass
class DistillConfig:
    teacher: Any = MISSING  # _target_ + kwargs of an egt.distill.teacher.Teacher
    max_attempts: int = MISSING
    batch_size: int = MISSING  # samples per call of a batched (local) teacher
    concurrency: int = MISSING  # requests in flight for a remote teacher (a local model uses 1)
    max_requests: Optional[int] = MISSING  # per-run cap on teacher HTTP requests (retries included)
    limit: Optional[int] = MISSING  # distil only the first N samples of sft_pool
    trajectories_path: Optional[str] = MISSING  # use outside trajectories, skip the stage


@dataclass
class SFTConfig:
    model_path: Optional[str] = MISSING  # use an outside model, skip the stage
    lr: float = MISSING
    weight_decay: float = MISSING
    warmup_ratio: float = MISSING
    batch_size: int = MISSING
    accumulate_grad_batches: int = MISSING
    # token: Σ target-token NLL / target tokens of the whole optimizer step (accumulation and ranks);
    # sequence: each sequence's token mean, averaged over the step's sequences (egt.sft.loss)
    loss_reduction: LossReduction = MISSING
    chunk_size: Optional[int] = MISSING  # output-head positions per loss chunk (recomputed in backward); null: one pass
    packing: bool = MISSING  # padding-free packed rows, per-sample positions and attention blocks (egt.sft.packing)
    packing_max_tokens: Optional[int] = MISSING  # packed row width; null: one row per micro-batch
    epochs: int = MISSING
    max_steps: int = MISSING
    max_length: int = MISSING
    val_fraction: float = MISSING
    checkpoint_every_n_steps: int = MISSING
    log_every_n_steps: int = MISSING
    num_workers: int = MISSING
    cache_encodings: bool = MISSING  # encode once into an on-disk Arrow cache, memory-mapped (egt.sft.cache)
    cache_tensors: bool = MISSING  # false: the cache keeps only each sample's check; samples encoded at every step
    eval_n: int = MISSING  # bench samples generated after SFT (format-ok, accuracy); 0 = none
    eval_max_new_tokens: int = MISSING
    eval_batch_size: int = MISSING


@dataclass
class GenerationSettings:
    """How a stage decodes beyond its temperature (egt.eval.generation.generation_config). Unset = off
    (top_k 0, top_p 1, repetition_penalty 1: the full distribution); a checkpoint's own
    generation_config.json applies only with ``use_checkpoint_defaults`` (Qwen2.5-VL-7B-Instruct
    ships top_k 1, top_p 0.001, temperature 0.1, repetition_penalty 1.05)."""

    top_k: Optional[int] = MISSING
    top_p: Optional[float] = MISSING
    repetition_penalty: Optional[float] = MISSING
    use_checkpoint_defaults: bool = MISSING
    # the KV cache of generate (egt.eval.generation.DECODE): dynamic | static | compiled (static + a compiled
    # decode step; the prompt pass, images included, runs once uncompiled). In the stage key only when not dynamic
    decode: Decode = MISSING


@dataclass
class PositionBiasLimits:
    """When eval (with ``order=both``) warns that a judge is position-biased on a benchmark and the
    report marks its official number with a dagger. Defaults and why: egt.benchmarks.metrics
    (MIN_CONSISTENCY, MAX_ORDER_GAP)."""

    min_consistency: float = MISSING  # fraction of pairs picking the same response in both orders
    max_gap: float = MISSING  # |accuracy with the better response first - accuracy with it second|


@dataclass
class ProbeConfig:
    """Entropy probing (paper §2.3): the model generates, one teacher-forced pass scores."""

    model_path: Optional[str] = MISSING  # probe with this HF VLM dir instead of the sft stage's model
    table_path: Optional[str] = MISSING  # use an outside probe.parquet, skip the stage
    split: str = MISSING
    limit: Optional[int] = MISSING  # probe only the first N samples of the split
    n: int = MISSING  # outputs per sample; n > 1 needs temperature > 0
    temperature: float = MISSING  # 0 = greedy
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_new_tokens: int = MISSING
    max_length: int = MISSING  # prompt tokens (image tokens included)
    batch_size: int = MISSING
    # positions per full-vocabulary entropy chunk; the output head is applied to a block of vocabulary rows
    # at a time, chunk × rows = 2^24, so peak extra memory is 2 × 64 MB fp32 whatever V (egt.probe.entropy)
    chunk_size: int = MISSING
    # teacher_forced: one extra forward pass over prompt + output; generate: read from the output head while
    # generating (no second pass; same entropies up to rounding, docs/scale.md)
    entropy_from: EntropyFrom = MISSING
    shard_size: int = MISSING  # samples per resumable shard
    bins: int = MISSING  # entropy bins of Figure 2
    both_orders: bool = MISSING  # probe again with the responses swapped (<column>_swapped); entropy=answer_debiased
    # record p("1"), p("2") at each draw's answer token (egt.probe.answer_probs); selection=bis, confident_learning
    answer_probs: bool = MISSING
    keep_texts: bool = MISSING  # a `texts` column: every draw's output (the rft stage's trajectories)


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning (the rft stage; UnifiedReward-Think's stage 2, egt.sft.rejection): the
    probe's correct draws of the SFT judge, fine-tuned on from the SFT judge with the sft settings."""

    keep: RFTKeep = MISSING  # first: each sample's first correct draw; all: every distinct one (≤ per_sample)
    per_sample: Optional[int] = MISSING  # cap of keep=all (null: none); keep=first keeps 1
    format: Any = MISSING  # _target_ of an egt.rl.rules FormatRule a kept draw must pass
    sft: dict = MISSING  # sft.* settings overridden for this fine-tuning (e.g. {epochs: 1}); {}: sft's own
    reprobe: bool = MISSING  # true: the select stage probes the pool with the rft judge (egt.stages.select)


@dataclass
class EntropyConfig:
    """The per-sample score e_i = f(e_answer, e_sentence) selection and curriculum sort by."""

    name: str = MISSING
    score: Any = MISSING  # _target_ of an egt.select.scores.EntropyScore


@dataclass
class SelectionConfig:
    """Which probed samples RL trains on (paper §2.3, Tables 3 and 5).

    Size: ``k`` if set, else ``percentile`` (keep e < q_p, counted on the
    entropy score), else ``fraction`` of the pool; ``all`` ignores them.
    """

    name: str = MISSING
    method: Any = MISSING  # _target_ of an egt.select.methods.Selection
    k: Optional[int] = MISSING
    fraction: Optional[float] = MISSING
    percentile: Optional[float] = MISSING  # in (0, 100]
    band: Band = MISSING  # mid: centred on the median
    seed: int = MISSING
    # online (with curriculum.reprobe_every > 0): re-select the same number of lowest-scored samples of the
    # probed pool at every re-probe, at most max_change entering (and as many leaving) each time
    online: bool = False
    max_change: Optional[int] = None  # null = no cap


@dataclass
class CurriculumConfig:
    """The order RL sees the selected samples in (paper §2.4); ``reprobe_every`` > 0 makes it online
    (egt.select.online: the current policy re-probes every that many epochs and the order follows)."""

    name: str = MISSING
    order: Any = MISSING  # _target_ of an egt.select.curriculum.Curriculum
    seed: int = MISSING  # for shuffle
    reprobe_every: int = 0  # 0 = the static curriculum (the paper): one probe, one order for every epoch


@dataclass
class EvalConfig:
    """Judge evaluation on registered benchmarks (egt.benchmarks; docs/design.md §6, paper Table 1)."""

    model_path: Optional[str] = MISSING  # evaluate this HF VLM dir instead of the pipeline's models
    model_label: Optional[str] = MISSING  # its row label in reports (default: the directory name)
    models: list = MISSING  # stages whose models are evaluated (egt.stages.MODEL_STAGES; those in `stages`, sft always)
    benchmarks: list = MISSING  # names, {name: …, kwargs} or {_target_: …}
    optional_benchmarks: list = MISSING  # evaluated only if <data_root>/<name> exists
    data_root: Optional[str] = MISSING  # public benchmarks are read from <data_root>/<name>
    order: EvalOrder = MISSING  # both: debiased accuracy, consistency; official: half the cost
    position_bias: PositionBiasLimits = field(default_factory=PositionBiasLimits)  # warning + dagger limits
    votes: int = MISSING  # Voting@K: majority of K sampled judgements (needs temperature > 0)
    temperature: float = MISSING  # 0 = greedy
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_new_tokens: int = MISSING
    max_length: int = MISSING  # prompt tokens (image tokens included); longer prompts are bad samples
    batch_size: int = MISSING
    on_bad_sample: OnBadSample = MISSING  # skip: counted in metrics.json
    limit: Optional[int] = MISSING  # first N items of each benchmark
    seed: int = MISSING  # random-swap order and sampling


@dataclass
class RLConfig:
    """RL on the selected samples in curriculum order (paper §2.4, docs/design.md §5). Steps count
    updates on rollout batches of ``batch_size`` prompts × ``group_size`` completions (one rollout batch
    each, or several with ``rl.filter.refill``)."""

    name: str = MISSING
    loss: Any = MISSING  # _target_ of an egt.rl.losses class (rl/loss=…)
    advantage: Any = MISSING  # _target_ of an egt.rl.advantages class (rl/advantage=…)
    filter: Any = MISSING  # _target_ of an egt.rl.filters class (rl/filter=…)
    backend: Any = MISSING  # _target_ of an egt.rl.rollout.RolloutBackend
    selection_path: Optional[str] = MISSING  # a selection.json to train on instead of the select stage's
    group_size: int = MISSING
    batch_size: int = MISSING  # prompts per rollout batch
    num_mini_batches: int = MISSING  # optimizer steps per PPO epoch over one rollout batch
    ppo_epochs: int = MISSING
    epochs: int = MISSING
    max_steps: int = MISSING  # updates (= rollout batches without refill); -1 = all epochs
    lr: float = MISSING
    weight_decay: float = MISSING
    warmup_ratio: float = MISSING
    max_grad_norm: Optional[float] = MISSING
    temperature: float = MISSING
    max_new_tokens: int = MISSING
    max_length: int = MISSING  # prompt tokens (image tokens included)
    kl_coef: float = MISSING  # 0 = no KL term and no reference model
    kl_estimator: KLEstimator = MISSING
    kl_in: KLIn = MISSING
    kl_clamp: Optional[float] = MISSING  # clamp each token's KL estimate to ±kl_clamp (verl, OpenRLHF: 10); null: none
    logprob_batch_size: Optional[int] = MISSING  # sequences per no-grad π_old / π_ref forward; null = the rollout batch
    logprob_chunk_size: int = MISSING  # positions per output-head chunk: peak extra memory ~ chunk × V fp32
    # log-prob passes run each prompt once per group: true/cache (KV cache), packed (one row per group, 4D mask;
    # also under activation checkpointing), false (every row whole); not in the key: same numbers
    shared_prompt_pass: Any = MISSING
    # padding-free rows in the log-prob passes (egt.rl.packing): units at their real length, up to
    # packing_max_tokens per row (null: one unit per row); with shared_prompt_pass packed or false; not in the key
    packing: bool = MISSING
    packing_max_tokens: Optional[int] = MISSING
    gather_for_generation: bool = MISSING  # ZeRO-3: gather the policy once per rollout to generate (not in the key)
    checkpoint_every_n_steps: int = MISSING  # updates between last.ckpt writes (at update boundaries only)
    log_examples: int = MISSING  # completions kept per step in curves.json
    eval_n: int = MISSING  # bench samples generated after RL (format-ok, accuracy); 0 = none
    eval_max_new_tokens: int = MISSING
    eval_batch_size: int = MISSING
    seed: Optional[int] = None  # rollouts and init of RL; null = the top-level seed (sweeps vary it alone)


@dataclass
class RewardConfig:
    """R = R_acc (1 + alpha R_logic) + beta R_format (paper §2.4)."""

    _target_: str = MISSING  # any class with CompositeReward's terms()
    alpha: float = MISSING
    beta: float = MISSING
    judge: Any = MISSING  # _target_ of an egt.rl.judges LogicJudge (reward/judge=rule|hf|http)
    accuracy: Any = MISSING  # _target_ of an egt.rl.rules AccuracyRule (reward/accuracy=r1|strict)
    format: Any = MISSING  # _target_ of an egt.rl.rules FormatRule (reward/format=r1|strict)


@dataclass
class TrainerConfig:
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = MISSING
    strategy: Any = MISSING
    precision: str = MISSING
    gradient_clip_val: Optional[float] = MISSING
    deterministic: bool = MISSING


@dataclass
class DistributedConfig:
    """Multi-process runs (torchrun / SLURM; egt.distributed). The launcher sets the ranks."""

    backend: Backend = Backend.auto  # auto: nccl on GPU, gloo on CPU
    timeout_minutes: float = 720.0  # how long ranks wait for rank 0 (it may be distilling)


@dataclass
class EgtConfig:
    stages: list = field(default_factory=lambda: list(DEFAULT_STAGES))  # egt.stages.DEFAULT_STAGES (all but rft)
    seed: int = MISSING
    seeds: Optional[str] = None  # experiment=table*|fig4: the rl.seed values swept, "0,1,2"
    run_name: Optional[str] = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    rft: RFTConfig = field(default_factory=RFTConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: Any = MISSING  # _target_ of a Lightning logger, or null


def register_configs() -> None:
    from egt.utils.http import http_extras_node  # extra_headers / extra_body of an HTTP teacher or judge

    ConfigStore.instance().store(name="egt_schema", node=EgtConfig)
    ConfigStore.instance().store(name="http_extras", node=http_extras_node())


register_configs()
