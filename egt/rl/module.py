"""RL of the reasoning reward model as a LightningModule (paper §2.4, docs/design.md §5).

One training step is one rollout batch of N prompts, in the curriculum's order, and one update on it
(with ``rl.filter.refill``, a step whose kept groups do not fill the batch holds them and returns; the
step that fills it updates: egt.rl.refill):

1. roll out G completions per prompt from the current policy π_old;
2. score them: R = R_acc (1 + α R_logic) + β R_format, every term kept;
3. log π_old (and the token entropy) of the rows the first mini-batch does not hold, in a no-grad
   pass per later mini-batch, before any update: the first mini-batch's gradient pass runs at θ_old,
   so its own log-probs, detached, are π_old for its rows (one mini-batch: no extra pass at all).
   A KL term in the reward needs every row's π_old before the advantages: then one pass over all
   rows. When a KL term is on, one no-grad pass for log π_ref through the frozen reference model
   (images included);
4. KL in the reward, if so configured: R ← R − β_KL Σ_t k(π_old, π_ref);
5. advantages (``rl/advantage``: token_whiten | batch_whiten | group), then the advantage filter
   (``rl/filter``: which sequences count in the loss and in its denominator);
6. ``ppo_epochs`` passes over ``num_mini_batches`` mini-batches: policy loss
   (``rl/loss``: PPO clip, or StableReinforce = pre-clip + PPO clip), plus
   β_KL · KL when the KL term is in the loss; backward, clip, step, LR step;
7. log every term.

Departures from the paper (StableReinforce in OpenRLHF, 8 GPUs) and from R1-Reward's released code
(yfzhang114/r1_reward@3693413; docs/design.md §11 gives each with its effect in numbers):

- Reward rules: R1-Reward's format and accuracy rules by default (``reward/format=r1``,
  ``reward/accuracy=r1``, egt.rl.rules), its accuracy rule ported for answers of 1 or 2 (no sympy, and
  no ``except: reward = 1.0``: an exception is not counted as correct); ``=strict``: egt's own.
- R_logic comes from a pluggable judge; the default is a rule (the conclusion stated in
  ``<think>`` names the chosen response), not R1-Reward's Qwen2.5-VL-7B consistency judge
  (``reward/judge=hf|http`` gives a model). A judge failure gives R_logic = 0, counted.
- Advantages: ``rl=stable_reinforce`` whitens over completion tokens as R1's code (token_whiten); the
  advantage filter is the R1-Reward *paper's* (|Â| ≤ z after normalisation, dropped from loss and
  denominator); the released code's, exactly, is ``rl/filter=r1_reward_code``. With group advantages
  and G ≤ 10 the paper filter can never fire (|Â| ≤ √(G−1) with the population σ, (G−1)/√G with
  Bessel's, ``rl=grpo``'s as TRL, verl and OpenRLHF): StableReinforce whitens over the batch.
- KL: k3 in the loss by default, aggregated over all sequences (filtered ones included); R1's script
  puts k1 in the reward per token, and egt's in-reward KL is one sequence-level sum. ``rl.kl_clamp``:
  none for StableReinforce (as R1's code), ±10 for ``rl=grpo`` (as verl and OpenRLHF; TRL: none).
- Loss aggregation: token mean per sequence, then the mean over sequences.
- Data parallel (N ranks): each rank rolls out its slice of the global batch (the epoch padded by
  wrapping to a multiple of N); rewards are gathered so advantages and the filter are the global
  batch's, but the loss mean is over each rank's kept sequences and DDP averages the gradients, which
  equals the global mean only when every rank keeps as many. Under DeepSpeed, rl.max_grad_norm is not
  applied (the engine owns the partitioned gradients).
- Rollouts sample at ``temperature`` from the full distribution (top_k = 0, top_p = 1, no
  repetition penalty, whatever the checkpoint's generation_config.json says), and log-probs are of
  π/T with the never-sampled vision placeholder tokens left out of the normaliser, so the ratio is
  exactly the sampling policy's (1 on the first PPO epoch).
- log π_old, log π_ref and the entropy come from the last hidden states through the output head in
  chunks of ``rl.logprob_chunk_size`` positions (checkpointed in the gradient pass), the no-grad
  passes in micro-batches of ``rl.logprob_batch_size`` sequences: no [b, L, V] tensor is held. With
  ``rl.packing`` the passes run padding-free packed rows (egt.rl.packing); every update logs the
  passes' real and computed language-model positions (``rl/logprob_tokens``, ``rl/logprob_positions``).
- Each step re-seeds the RNG from (seed, rollout index, rank) inside a forked RNG, so a resumed
  run draws the same completions as an uninterrupted one (with the same number of ranks).
- LR: linear warmup, then constant. Rollout batches that do not fill ``batch_size`` (the
  end of an epoch) are used as they are, not dropped.
- Refill (``rl/filter=zero_variance rl.filter.refill=true``, DAPO's dynamic sampling): one process only
  (several would need the fill decision and the batch balanced across ranks); ``rl.max_steps`` counts
  updates, not rollout batches; the departures from verl's are in egt.rl.refill.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from egt import distributed
from egt.components import build
from egt.data.encode import ChatEncoder
from egt.data.sampler import ResumableSampler
from egt.errors import ConfigError
from egt.models.loader import multimodal_token_ids
from egt.rl.advantages import AdvantageEstimator
from egt.rl.batch import RolloutBatch
from egt.rl.filters import AdvantageFilter
from egt.rl.functional import aggregate, kl_term, masked_mean
from egt.rl.generated import Generated
from egt.rl.generated import mean as _mean
from egt.rl.losses import PolicyLoss
from egt.rl.packing import PassTokens
from egt.rl.refill import refill_buffer
from egt.rl.reward import CompositeReward, RewardTerms
from egt.rl.rollout import Rollout, RolloutBackend, logprobs_and_entropy, rollout, stop_ids
from egt.utils.logging import sampler_restored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RLSettings:
    """The RL module's settings. Each field named as a key of ``cfg.rl`` is read from it by
    :meth:`from_config` (a new setting: a field here, its key in ``conf/rl`` and ``RLConfig``, and its use
    in :class:`RLModule` as ``self.settings.<name>``); the stage derives ``warmup_steps``, ``seed`` and
    ``max_updates``."""

    group_size: int
    ppo_epochs: int
    num_mini_batches: int
    max_new_tokens: int
    temperature: float
    lr: float
    weight_decay: float
    warmup_steps: int
    max_grad_norm: float | None
    kl_coef: float
    kl_estimator: str
    kl_in: str
    kl_clamp: float | None = None  # k1/k3 per token clamped at ±kl_clamp (verl, OpenRLHF: 10); None: not clamped
    seed: int = 0
    max_updates: int = -1  # updates (rl.max_steps); -1: every epoch
    batch_size: int = 0  # prompts per update (rl.batch_size): what a refill fills
    log_examples: int = 2
    logprob_batch_size: int | None = None
    logprob_chunk_size: int = 256
    skip_old_pass_on_policy: bool = True  # False: a no-grad π_old pass over every row
    shared_prompt_pass: bool | str = True  # one prompt pass per group: True/"cache", "packed", False (rollout.py)
    packing: bool = False  # padding-free packed rows in the log-prob passes (egt.rl.packing)
    packing_max_tokens: int | None = None  # tokens per packed row; None: one unit (group / sequence) per row
    gather_for_generation: bool = True  # ZeRO-3: gather the policy once per rollout (egt.distributed)

    @classmethod
    def from_config(cls, rl: Mapping[str, Any], **derived: Any) -> RLSettings:
        """Every field from the key of ``rl`` (``cfg.rl``) of the same name, ``derived`` (what the stage
        computes) winning; a field in neither keeps its default."""
        given = {f.name: rl[f.name] for f in fields(cls) if f.name in rl and f.name not in derived}
        return cls(**given, **derived)


class RLModule(L.LightningModule):
    """The components (reward, loss, advantage, filter, rollout backend) and :class:`RLSettings`, given as
    ``settings`` or as its fields by keyword; :meth:`from_config` builds all of them from the config."""

    def __init__(
        self,
        model: torch.nn.Module,
        encoder: ChatEncoder,
        reward: CompositeReward,
        loss: PolicyLoss,
        advantage: AdvantageEstimator,
        adv_filter: AdvantageFilter,
        backend: RolloutBackend,
        sampler: ResumableSampler,
        settings: RLSettings | None = None,
        *,
        ref_model: torch.nn.Module | None = None,
        scores: Mapping[str, float] | None = None,
        **settings_kw: Any,
    ):
        super().__init__()
        if (settings is None) == (not settings_kw):
            raise TypeError("RLModule takes its settings as an RLSettings or as keywords (exactly one of the two)")
        s = self.settings = settings if settings is not None else RLSettings(**settings_kw)
        self.automatic_optimization = False
        self.model, self.encoder, self.reward = model, encoder, reward
        self.loss_fn, self.advantage, self.adv_filter, self.backend = loss, advantage, adv_filter, backend
        self.sampler = sampler
        self.group_size, self.ppo_epochs, self.num_mini_batches = s.group_size, s.ppo_epochs, s.num_mini_batches
        self.max_new_tokens, self.temperature = s.max_new_tokens, s.temperature
        self.lr, self.weight_decay, self.warmup_steps = s.lr, s.weight_decay, s.warmup_steps
        self.max_grad_norm = s.max_grad_norm
        self.kl_coef, self.kl_in = s.kl_coef, s.kl_in
        self.kl = functools.partial(kl_term, estimator=s.kl_estimator, clamp=s.kl_clamp)  # [B, L], [B, L] → [B, L]
        self._ref = (ref_model,)  # a tuple: not a submodule, so not in the checkpoint nor the optimizer
        self.seed, self.max_updates, self.log_examples = s.seed, s.max_updates, s.log_examples
        self.logprob_batch_size, self.logprob_chunk_size = s.logprob_batch_size, s.logprob_chunk_size
        self.skip_old_pass_on_policy = s.skip_old_pass_on_policy
        self.shared_prompt_pass = s.shared_prompt_pass
        self._tokens = PassTokens()  # positions of the current update's log-prob passes (rl/logprob_*)
        self.gather_for_generation = s.gather_for_generation
        self.generation_path: str | None = None  # the last rollout's (egt.distributed.GenerationPath.name)
        self.gather_seconds: list[float] = []  # each gathered rollout's gather time, this process's run
        self._unlogged_gather_s = 0.0  # gather seconds of the rollouts since the last logged update
        self._entropy = torch.zeros(0)  # [B, L] token entropy of the current rollout under π_old
        self.suppress_ids = multimodal_token_ids(encoder.processor)  # never sampled: out of the normaliser too
        self.scores = dict(scores or {})  # sample id → the selection's score (RolloutBatch.scores)
        self.refill = refill_buffer(adv_filter, s.group_size, s.batch_size, encoder.tokenizer.pad_token_id)
        self.rollouts = 0  # rollout batches done (the checkpoint holds it; it seeds each step's RNG)
        self.updates = 0  # updates done (= rollouts without refill)
        self.prompts_generated = 0  # prompts rolled out on this rank, refills included
        self._unlogged_s = 0.0  # seconds of the steps since the last logged update
        self.history: list[dict[str, Any]] = []  # per-update metrics + sample ids, for curves.json

    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        model: torch.nn.Module,
        encoder: ChatEncoder,
        sampler: ResumableSampler,
        *,
        ref_model: torch.nn.Module | None = None,
        scores: Mapping[str, float] | None = None,
        **derived: Any,
    ) -> RLModule:
        """The module of ``cfg.reward`` and ``cfg.rl``: the reward, ``rl.loss``, ``rl.advantage``, ``rl.filter``
        and ``rl.backend`` by their ``_target_``, the settings by name (:meth:`RLSettings.from_config`, with
        the stage's ``derived`` ones)."""
        r = cfg.rl
        reward = instantiate(cfg.reward)  # the judge inside is built too
        if not isinstance(reward, CompositeReward):
            raise TypeError(
                f"reward._target_ must build an egt.rl.reward.CompositeReward (it needs terms()), "
                f"got {type(reward).__name__}"
            )
        return cls(
            model,
            encoder,
            reward,
            build(r.loss, PolicyLoss, "rl.loss"),
            build(r.advantage, AdvantageEstimator, "rl.advantage"),
            build(r.filter, AdvantageFilter, "rl.filter"),
            instantiate(r.backend),
            sampler,
            RLSettings.from_config(r, **derived),
            ref_model=ref_model,
            scores=scores,
        )

    @property
    def ref_model(self) -> torch.nn.Module | None:
        return self._ref[0]

    def on_fit_start(self) -> None:
        if self.refill is not None and self.trainer.world_size > 1:
            raise ConfigError(
                f"rl.filter.refill=true runs on one process only for now ({self.trainer.world_size} here: the "
                "fill decision and the update's batch would have to be balanced across ranks); write "
                "rl.filter.refill=false (the batch shrinks instead) or train on one device"
            )
        if self.ref_model is not None:
            self.ref_model.to(self.device).eval().requires_grad_(False)
        self._check_gather_fits()

    def deepspeed_engine(self) -> Any:
        """The DeepSpeed engine under ZeRO-3 (its hooks are lifted while the gathered policy generates), else None."""
        return distributed.deepspeed_engine(self._trainer)

    def _check_gather_fits(self) -> None:
        """Under ZeRO-3 on CUDA with ``rl.gather_for_generation``: refuse a run whose gathered generation
        cannot fit the GPU (egt.config.validation.check_gather_fits; the config states no device memory,
        so the device is asked here, at fit start)."""
        strategy = getattr(self._trainer, "strategy", None)
        if not (self.gather_for_generation and getattr(strategy, "zero_stage_3", False) and self.device.type == "cuda"):
            return
        from egt.config.validation import GIB, check_gather_fits

        zero = (getattr(strategy, "config", None) or {}).get("zero_optimization") or {}
        n = sum(int(getattr(p, "ds_numel", p.numel())) for p in self.model.parameters())
        p0 = next(self.model.parameters())
        need = check_gather_fits(
            n,
            p0.element_size(),
            self.trainer.world_size,
            torch.cuda.get_device_properties(self.device).total_memory,
            offload_optimizer="offload_optimizer" in zero,
            offload_parameters="offload_param" in zero,
        )
        log.info(
            "[rl] rl.gather_for_generation: each rollout gathers the policy (%.1f GiB per rank, %.1f GiB with ZeRO-3's "
            "partition; KV cache not counted)",
            need["gathered"] / GIB,
            need["total"] / GIB,
        )

    # ------------------------------------------------------------------ the step
    def training_step(self, samples: list[dict[str, Any]], batch_idx: int) -> None:
        self.sampler.advance(len(samples))  # counted before any checkpoint of this step is written
        t0 = time.perf_counter()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            # each rank its own stream (its prompts differ anyway); rank 0 of W processes = one process
            torch.manual_seed(self.seed * 1_000_003 + self.rollouts + 7_919 * distributed.rank())
            self.backend.sync(self.model, self.updates)  # e.g. vLLM: this update's policy weights
            ro = rollout(
                self.model,
                self.backend,
                self.encoder,
                samples,
                self.group_size,
                self.max_new_tokens,
                self.temperature,
                gather=self.gather_for_generation,
                engine=self.deepspeed_engine(),
            )
            self._note_generation(ro)
            terms = self.reward.terms([s for s in ro.samples for _ in range(ro.group_size)], ro.texts)
            generated = Generated.of(ro, terms, self._stop_ids, self.max_new_tokens, self.log_examples)
            if self.refill is None:
                metrics: dict[str, float] | None = generated.metrics() | self._score_and_update(ro, terms)
                self.updates += 1
            else:
                metrics, generated = self._refill_step(ro, terms, generated)  # None while refilling
        self.rollouts += 1
        self.prompts_generated += len(samples)
        self._unlogged_s += time.perf_counter() - t0
        if metrics is not None:
            self._log_update(metrics, generated)

    def _note_generation(self, ro: Rollout) -> None:
        path = ro.generation
        if path is None:
            return
        if path.name != self.generation_path:
            log.info("[rl] rollouts generate on the %s path", path.name)
        self.generation_path = path.name
        if path.name == "gathered":
            self.gather_seconds.append(path.gather_s)
            self._unlogged_gather_s += path.gather_s

    def generation_summary(self) -> dict[str, Any]:
        """``generation_path`` (gathered | partitioned | plain | engine) and, when gathered, the mean
        seconds the gather took per rollout batch (``gather_s_per_rollout``; since this process started)."""
        out: dict[str, Any] = {"generation_path": self.generation_path}
        if self.gather_seconds:
            out["gather_s_per_rollout"] = round(sum(self.gather_seconds) / len(self.gather_seconds), 4)
        return out

    def _refill_step(
        self, ro: Rollout, terms: RewardTerms, generated: Generated
    ) -> tuple[dict[str, float] | None, Generated]:
        """Keep this rollout batch's groups the filter keeps (decided on its own rewards and terms, before
        any log-prob pass); update once the buffer is due (egt.rl.refill). Returns (None, _) while refilling,
        else the update's metrics and everything generated for it."""
        rewards = torch.tensor(terms.reward, dtype=torch.float32)  # [B]
        self.refill.add(ro, terms, self.adv_filter.groups(self._batch(ro, rewards, terms)), generated)
        if not self.refill.due(end_of_epoch=self.sampler.consumed >= _epoch_length(self.sampler)):
            return None, generated
        update = self.refill.take()
        metrics = update.generated.metrics() | update.stats
        if update.rollout is None:
            log.warning(
                "[rl] no group kept in %d rollout batches (%d prompts): update skipped",
                update.generated.rollouts,
                len(update.generated.ids),
            )
            return metrics | {"rl/update_skipped": 1.0}, update.generated
        metrics |= self._score_and_update(update.rollout, update.terms) | {"rl/update_skipped": 0.0}
        self.updates += 1
        return metrics, update.generated

    def _log_update(self, metrics: dict[str, float], generated: Generated) -> None:
        """Log one update's metrics (Lightning's logger and the history for curves.json); seconds and
        prompts per second count every rollout batch drawn for it."""
        metrics["rl/step_s"], self._unlogged_s = self._unlogged_s, 0.0
        metrics["rl/samples_per_s"] = len(generated.ids) / metrics["rl/step_s"]
        if self.generation_path == "gathered":  # seconds spent gathering ZeRO-3's parameters for generation
            metrics["rl/gather_s"], self._unlogged_gather_s = self._unlogged_gather_s, 0.0
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, batch_size=len(generated.ids))
        self.history.append(
            {
                "step": self.updates,
                "epoch": self.sampler.epoch,
                **metrics,
                "ids": generated.ids,
                **({"trained_ids": generated.trained_ids} if generated.trained_ids is not None else {}),
                "examples": generated.examples,
            }
        )

    def _score_and_update(self, ro: Rollout, terms: RewardTerms) -> dict[str, float]:
        """Steps 3–6 of the module docstring on one update's batch, whose reward ``terms`` are known; returns
        the update's metrics (the reward terms themselves are logged from egt.rl.generated)."""
        rewards = torch.tensor(terms.reward, dtype=torch.float32)  # [B]
        mask = ro.completion_mask  # [B, L]
        self._tokens = PassTokens()
        chunks = torch.arange(ro.size).tensor_split(min(self.num_mini_batches, ro.size))  # the mini-batches
        in_reward = self.ref_model is not None and self.kl_in == "reward"
        # π_old is θ before this rollout's first update, which is where the first mini-batch's gradient pass
        # runs: its detached log-probs are π_old for its rows (TRL does this for one update; here for the
        # first of several too). The other rows get a no-grad pass now, in the same mini-batches (and so the
        # same padding) as their gradient passes. A KL term in the reward needs every row's π_old before the
        # advantages: then one pass over all rows (as with skip_old_pass_on_policy=False, the reference).
        first_is_old = self.skip_old_pass_on_policy and not in_reward
        with torch.no_grad():
            if not first_is_old:
                old_logp, entropy = logprobs_and_entropy(
                    self.model,
                    ro.prompt_feats,
                    ro.completion_ids,
                    mask,
                    self._pad,
                    self.temperature,
                    with_entropy=True,
                    **self._logprob_kw(),
                )
                ro.old_logp, self._entropy = old_logp.cpu(), entropy.cpu()
            else:
                ro.old_logp, self._entropy = torch.zeros(mask.shape), torch.zeros(mask.shape)  # [B, L]
                for idx in chunks[1:]:
                    old_logp, entropy = logprobs_and_entropy(
                        self.model,
                        [ro.prompt_feats[i] for i in idx.tolist()],
                        ro.completion_ids[idx],
                        mask[idx],
                        self._pad,
                        self.temperature,
                        with_entropy=True,
                        **self._logprob_kw(),
                    )
                    ro.old_logp[idx], self._entropy[idx] = old_logp.cpu(), entropy.cpu()
            if self.ref_model is not None:
                ref_logp, _ = logprobs_and_entropy(
                    self.ref_model,
                    ro.prompt_feats,
                    ro.completion_ids,
                    mask,
                    self._pad,
                    self.temperature,
                    **self._logprob_kw(),
                )
                ro.ref_logp = ref_logp.cpu()
        if in_reward:  # every row's π_old is known (see above)
            rewards = rewards - self.kl_coef * (self._kl_tokens(ro) * mask).sum(-1)  # [B]
        adv, keep, in_denominator = self._advantages(self._batch(ro, rewards, terms))  # [B], [B], [B]
        update = self._update(ro, chunks, first_is_old, adv, keep, in_denominator)
        kl_tok, entropy = self._kl_tokens(ro), self._entropy  # π_old complete after the first epoch
        return {
            "rl/adv_filtered": 1.0 - float(keep.float().mean()),
            "rl/kl": float(masked_mean(kl_tok, mask)),
            "rl/entropy": float(masked_mean(entropy.cpu(), mask)),
            # language-model positions of the update's log-prob passes (π_old, π_ref, every gradient pass):
            # real tokens and computed positions (padding included), rl.packing's saving
            "rl/logprob_tokens": float(self._tokens.tokens),
            "rl/logprob_positions": float(self._tokens.positions),
            **update,
        }

    @property
    def _stop_ids(self) -> list[int]:
        return stop_ids(self.model, self.encoder)

    @property
    def _pad(self) -> int:
        return self.encoder.tokenizer.pad_token_id

    def _kl_tokens(self, ro: Rollout) -> torch.Tensor:
        """k(π_old, π_ref) per token [B, L]; zeros without a reference model."""
        return self.kl(ro.old_logp, ro.ref_logp) if ro.ref_logp is not None else torch.zeros_like(ro.old_logp)

    def _logprob_kw(self) -> dict[str, Any]:
        """Micro-batch and head-chunk sizes of the no-grad log-prob passes (π_old, π_ref), the shared prompt
        and packing settings, and the update's position counter."""
        return {
            "chunk_size": self.logprob_chunk_size,
            "batch_size": self.logprob_batch_size,
            "suppress_ids": self.suppress_ids,
            "shared_prompt": self.shared_prompt_pass,
            "packing": self.settings.packing,
            "packing_max_tokens": self.settings.packing_max_tokens,
            "counts": self._tokens,
        }

    def _batch(self, ro: Rollout, rewards: torch.Tensor, terms: Any) -> RolloutBatch:
        """This rank's rows as the advantage estimator and filter see them (egt.rl.batch)."""
        b = rewards.numel()
        score = [self.scores.get(str(s["id"]), math.nan) for s in ro.samples for _ in range(ro.group_size)]
        return RolloutBatch(
            rewards=rewards.float(),
            acc=torch.tensor(terms.acc, dtype=torch.float32),
            logic=torch.tensor(terms.logic, dtype=torch.float32),
            format=torch.tensor(terms.format, dtype=torch.float32),
            lengths=ro.completion_mask.sum(-1).long(),
            group_ids=torch.arange(b, dtype=torch.long) // ro.group_size,
            scores=torch.tensor(score, dtype=torch.float32),
            group_size=ro.group_size,
        )

    def _advantages(self, batch: RolloutBatch) -> tuple[torch.Tensor, ...]:
        """Advantages and filter masks over the *global* rollout batch (every rank's rows gathered, in
        rank order, group ids renumbered), so batch whitening and the filter see what one process would;
        returns this rank's rows.  [B] each → [B], [B], [B]"""
        world = distributed.world_size()
        if world == 1:
            return _filtered(batch, self.advantage, self.adv_filter)
        b = len(batch)
        gathered = {k: self.all_gather(v.to(self.device)).reshape(-1).cpu() for k, v in batch.tensors().items()}
        gathered["group_ids"] = torch.arange(world * b, dtype=torch.long) // batch.group_size  # [W·B]
        every = RolloutBatch(**gathered, group_size=batch.group_size)  # rank r's rows r·B … r·B+B−1
        adv, keep, in_denominator = _filtered(every, self.advantage, self.adv_filter)
        mine = slice(distributed.rank() * b, (distributed.rank() + 1) * b)
        return adv[mine], keep[mine], in_denominator[mine]

    def _update(
        self,
        ro: Rollout,
        chunks: tuple[torch.Tensor, ...],
        first_is_old: bool,
        adv: torch.Tensor,
        keep: torch.Tensor,
        in_denominator: torch.Tensor,
    ) -> dict[str, float]:
        """``ppo_epochs`` passes over the mini-batches ``chunks`` (row indices). ``first_is_old``: the first
        gradient pass fills in log π_old and the entropy of its rows (see _score_and_update)."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        params = [p for p in self.model.parameters() if p.requires_grad]
        stats: dict[str, list[float]] = {"loss": [], "clip_frac": [], "ratio": [], "grad_norm": []}
        for epoch in range(self.ppo_epochs):
            for k, idx in enumerate(chunks):
                feats = [ro.prompt_feats[i] for i in idx.tolist()]
                mask = ro.completion_mask[idx].to(self.device)  # [b, L]
                first = first_is_old and epoch == 0 and k == 0  # θ = θ_old: this pass is π_old too
                logp, ent = logprobs_and_entropy(
                    self.model,
                    feats,
                    ro.completion_ids[idx],
                    mask,
                    self._pad,
                    self.temperature,
                    chunk_size=self.logprob_chunk_size,
                    suppress_ids=self.suppress_ids,
                    with_entropy=first,
                    shared_prompt=self.shared_prompt_pass,
                    packing=self.settings.packing,
                    packing_max_tokens=self.settings.packing_max_tokens,
                    counts=self._tokens,
                )
                if first:
                    ro.old_logp[idx], self._entropy[idx] = logp.detach().cpu(), ent.detach().cpu()
                out = self.loss_fn(
                    logp,
                    ro.old_logp[idx].to(self.device),
                    adv[idx].to(self.device),
                    mask,
                    keep[idx].to(self.device),
                    in_denominator[idx].to(self.device),
                )
                loss = out.loss
                if self.ref_model is not None and self.kl_in == "loss":
                    loss = loss + self.kl_coef * aggregate(self.kl(logp, ro.ref_logp[idx].to(self.device)), mask)
                opt.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                norm = self._clip(params)
                opt.step()
                sched.step()
                for k, v in (
                    ("loss", loss),
                    ("clip_frac", out.clip_frac),
                    ("ratio", out.ratio_mean),
                    ("grad_norm", norm),
                ):
                    stats[k].append(float(v.detach()) if torch.is_tensor(v) else float(v))
        return {
            "rl/loss": _mean(stats["loss"]),
            "rl/clip_frac": _mean(stats["clip_frac"]),
            "rl/ratio_mean": _mean(stats["ratio"]),
            "rl/grad_norm": _mean(stats["grad_norm"]),
            "rl/lr": float(sched.get_last_lr()[0]),
        }

    def _clip(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        """Clip to rl.max_grad_norm (gradients are already averaged over ranks by DDP). Under DeepSpeed the
        gradients are partitioned: the engine owns them, nothing is clipped here (norm reported as nan)."""
        if distributed.is_deepspeed(getattr(self._trainer, "strategy", None)):
            return torch.tensor(float("nan"))
        return torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm or float("inf"))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if 0 < self.max_updates <= self.updates:
            self.trainer.should_stop = True

    @property
    def at_update_boundary(self) -> bool:
        """No rollout batch is held for an unfinished update (always, without refill): a checkpoint written
        now resumes to the same updates (egt.stages.rl.RolloutCheckpoint writes only here)."""
        return self.refill is None or self.refill.empty

    # ------------------------------------------------------------- optimiser, state
    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = distributed.adamw(params, self.lr, self.weight_decay, self._trainer)
        warm = max(0, self.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.at_update_boundary:  # the buffered rollouts are not in it: a resume would not redraw them
            log.warning(
                "[rl] a checkpoint written mid-refill (%d rollout batches held): resuming from it loses them",
                self.refill.tries,
            )
        checkpoint["egt_sampler"] = self.sampler.state_dict()
        checkpoint["egt_rl"] = {
            "rollouts": self.rollouts,
            "updates": self.updates,
            "prompts_generated": self.prompts_generated,
            "history": self.history,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "egt_sampler" in checkpoint:
            self.sampler.load_state_dict(checkpoint["egt_sampler"])
            sampler_restored()
        if "egt_rl" in checkpoint:
            state = checkpoint["egt_rl"]
            self.rollouts = int(state["rollouts"])
            self.updates = int(state.get("updates", self.rollouts))  # before refill: one update per rollout
            self.prompts_generated = int(state.get("prompts_generated", 0))
            self.history = list(state["history"])


def _filtered(
    batch: RolloutBatch, advantage: AdvantageEstimator, adv_filter: AdvantageFilter
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advantages [B] (0 where the filter drops a row, so a non-finite one cannot reach the loss as
    0 · NaN), keep [B], in_denominator [B]."""
    adv = advantage(batch)  # [B]
    keep, in_denominator = adv_filter(batch, adv)
    return adv.masked_fill(~keep, 0.0), keep, in_denominator


def _epoch_length(sampler: ResumableSampler) -> int:
    """This rank's samples in the sampler's current epoch (a two-stage curriculum's epochs differ in length
    and its sampler has no ``len``: egt.select.two_stage.TwoStageSampler)."""
    length = getattr(sampler, "epoch_length", None)
    return length(sampler.epoch) if length is not None else len(sampler)
