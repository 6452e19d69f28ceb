"""The mathematics of the RL stage as pure tensor functions (docs/design.md §5, paper §2.4).

No Lightning, no model: tensors in, tensors out, shapes in the comments. ``N``
prompts, ``G`` completions per prompt, ``B = N*G`` sequences, ``L`` completion
tokens. StableReinforce (R1-Reward) = pre-clip of the log-ratio + PPO clipping
+ an advantage filter; GRPO = group advantages + PPO clipping.

Every function has a hand-checkable doctest; ``tests/unit/rl`` checks more
hand-worked values.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

PRECLIP_LOW, PRECLIP_HIGH = math.log(1e-3), math.log(1e3)


# ---------------------------------------------------------------- advantages
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6, unbiased: bool = False) -> torch.Tensor:
    """GRPO: Â_i = (r_i − mean_g) / (σ_g + ε) within each group of ``group_size`` consecutive
    completions of one prompt; σ_g is the population std (÷G) or, with ``unbiased``, Bessel's (÷(G−1):
    TRL ``GRPOTrainer``, verl ``compute_grpo_outcome_advantage``, OpenRLHF ``group_norm``, all via
    ``torch.std``). A constant group gives 0; so does a group of one (σ undefined for ÷(G−1)).

    Bound: one outlier in G gives the largest |Â|: √(G−1) with population σ (1.73 at G = 4, 3 at
    G = 10), (G−1)/√G with Bessel's (1.5 at G = 4, 2.85 at G = 10); the unbiased advantages are the
    population ones × √((G−1)/G).

    rewards: [N*G] → [N*G]

    >>> group_advantages(torch.tensor([1., 3., 2., 2.]), 2)
    tensor([-1.0000,  1.0000,  0.0000,  0.0000])
    >>> group_advantages(torch.tensor([1., 0., 0., 0.]), 4, eps=0.0)                # √3 = 1.73
    tensor([ 1.7321, -0.5774, -0.5774, -0.5774])
    >>> group_advantages(torch.tensor([1., 0., 0., 0.]), 4, eps=0.0, unbiased=True)  # 3/√4 = 1.5
    tensor([ 1.5000, -0.5000, -0.5000, -0.5000])
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)  # [N, G]
    mean = r.mean(dim=1, keepdim=True)  # [N, 1]
    std = r.std(dim=1, correction=int(unbiased and group_size > 1), keepdim=True)  # [N, 1]
    return ((r - mean) / (std + eps)).view(-1)  # [N*G]


def batch_whiten(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Whitening over the whole batch, one weight per sequence: (r − mean_B) / (σ_B + ε), population σ.

    rewards: [B] → [B]

    >>> batch_whiten(torch.tensor([0., 2., 0., 2.]))
    tensor([-1.0000,  1.0000, -1.0000,  1.0000])
    """
    r = rewards.float()  # [B]
    return (r - r.mean()) / (r.std(unbiased=False) + eps)


def token_mean(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of a per-sequence value over the batch's completion tokens: Σ L_i r_i / Σ L_i.

    rewards: [B]; lengths: [B] completion tokens → scalar

    >>> token_mean(torch.tensor([0., 1.]), torch.tensor([1, 3]))
    tensor(0.7500)
    """
    w = lengths.float()  # [B]
    return (w * rewards.float()).sum() / w.sum().clamp(min=1.0)


def token_whiten(rewards: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """REINFORCE++ whitening over action tokens, as R1-Reward's OpenRLHF fork (``ReplayBuffer.normalize``,
    openrlhf/trainer/ppo_utils/replay_buffer.py, yfzhang114/r1_reward@3693413) and OpenRLHF run it: every
    completion token carries its sequence's return r_i, so the mean and variance are over tokens and a
    sequence weighs by its length L_i:

        μ = Σ L_i r_i / Σ L_i,  v = Σ L_i (r_i − μ)² / Σ L_i,  Â_i = (r_i − μ) / √max(v, ε).

    (R1's code adds 1e-8 to every Â, not done here; a constant batch gives 0, R1's 1e-8.)

    rewards: [B]; lengths: [B] completion tokens → [B]

    >>> token_whiten(torch.tensor([0., 1.]), torch.tensor([1, 3]))    # per sequence: [−1, 1]
    tensor([-1.7321,  0.5774])
    """
    w = lengths.float()  # [B]
    r = rewards.float()  # [B]
    mu = token_mean(r, w)
    var = (w * (r - mu).square()).sum() / w.sum().clamp(min=1.0)
    return (r - mu) * var.clamp(min=eps).rsqrt()


# ---------------------------------------------------------- advantage filters
def filter_normalised(advantages: torch.Tensor, z: float = 3.0) -> torch.Tensor:
    """StableReinforce advantage filter as the R1-Reward paper states it: keep
    |Â| ≤ z after normalisation (the dropped ones leave the loss *and* its denominator).

    advantages: [B] → keep mask [B] (bool)

    >>> filter_normalised(torch.tensor([0.5, -3.0, 3.5, -4.0]), z=3.0)
    tensor([ True,  True, False, False])
    """
    return advantages.abs() <= z


def filter_r1_code(
    advantages: torch.Tensor, raw_mean: torch.Tensor | float, z: float = 3.0, cap: float = 10.0
) -> torch.Tensor:
    """The advantage filter of R1-Reward's released code (``ReplayBuffer.normalize``,
    openrlhf/trainer/ppo_utils/replay_buffer.py, yfzhang114/r1_reward@3693413): the *whitened*
    advantages are compared with the *raw* mean ± z (``lower_bound = mean - 3``, where ``mean`` is the
    token mean of the un-whitened returns), and |Â| > ``cap`` (10) or a non-finite Â is dropped too.
    The bounds mix units: the window is centred on the raw mean, not on 0 (a high mean reward drops
    the low-reward rows).

    advantages: [B] whitened; raw_mean: the token mean of the rewards → keep mask [B] (bool)

    >>> a = token_whiten(torch.tensor([2., 2., 2., 0.]), torch.ones(4, dtype=torch.long))  # [.58 ×3, −1.73]
    >>> filter_r1_code(a, raw_mean=1.5)        # bounds [−1.5, 4.5]
    tensor([ True,  True,  True, False])
    >>> filter_r1_code(torch.tensor([0.5, float("nan"), 11.0, -9.0]), raw_mean=0.0, z=20.0)
    tensor([ True, False, False,  True])
    """
    a = advantages.float()  # [B]
    inside = (a >= raw_mean - z) & (a <= raw_mean + z)  # [B]
    return inside & torch.isfinite(a) & (a.abs() <= cap)


# ------------------------------------------------------------ ratio and PPO
def preclip_log_ratio(
    logp: torch.Tensor, old_logp: torch.Tensor, low: float = PRECLIP_LOW, high: float = PRECLIP_HIGH
) -> torch.Tensor:
    """StableReinforce pre-clip: log π_θ − log π_old clamped to [log 1e-3, log 1e3]
    *before* exp, so a far-off-policy token cannot overflow the ratio.

    logp, old_logp: [B, L] → clamped log-ratio [B, L]

    >>> preclip_log_ratio(torch.tensor([[0., -20., 20.]]), torch.zeros(1, 3)).exp()
    tensor([[1.0000e+00, 1.0000e-03, 1.0000e+03]])
    """
    return torch.clamp(logp - old_logp, min=low, max=high)


def ppo_clip_loss(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate per token: −min(ρ·Â, clip(ρ, 1−ε, 1+ε)·Â), ρ = exp(log_ratio).

    log_ratio: [B, L], advantages: [B] → (loss [B, L], clipped [B, L] bool: the clipped
    term was the one taken, i.e. the token gives no gradient)

    >>> lr = torch.tensor([[math.log(1.5)], [math.log(0.5)], [math.log(1.1)]])
    >>> loss, clipped = ppo_clip_loss(lr, torch.tensor([1., -1., 1.]))
    >>> loss.view(-1), clipped.view(-1)      # 1.2·1, −(0.8·−1), 1.1·1 unclipped
    (tensor([-1.2000,  0.8000, -1.1000]), tensor([ True,  True, False]))
    """
    ratio = log_ratio.exp()  # [B, L]
    adv = advantages.unsqueeze(-1)  # [B, 1]
    unclipped = ratio * adv  # [B, L]
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv  # [B, L]
    loss = -torch.minimum(unclipped, clipped)  # [B, L]
    return loss, clipped < unclipped


# ------------------------------------------------------------------- KL terms
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π_θ − log π_ref per token (unbiased, can be negative; Schulman 2020).

    [B, L], [B, L] → [B, L]

    >>> kl_k1(torch.tensor([-1.0]), torch.tensor([-2.0]))
    tensor([1.])
    """
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = exp(d) − d − 1 with d = log π_ref − log π_θ per token (≥ 0, low variance).

    [B, L], [B, L] → [B, L]

    >>> kl_k3(torch.tensor([-1.0, -1.0]), torch.tensor([-1.0, -1.0 + math.log(2)]))  # d = 0, log 2
    tensor([0.0000, 0.3069])
    """
    d = ref_logp - logp
    return d.exp() - d - 1.0


KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def kl_term(
    logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3", clamp: float | None = None
) -> torch.Tensor:
    """Per-token KL estimate ``estimator`` (k1 | k3), clamped to [−clamp, clamp] when ``clamp`` is set
    (verl ``kl_penalty`` clamps k3 at ±10, OpenRLHF ``compute_approx_kl`` every estimator at ±10, TRL and
    R1-Reward's fork do not). A clamped token gives no KL gradient.

    [B, L], [B, L] → [B, L]

    >>> kl_term(torch.tensor([-1.0, -1.0]), torch.tensor([-1.0, 12.0]), "k3", clamp=10.0)  # e^13 − 14 → 10
    tensor([ 0., 10.])
    """
    k = KL_ESTIMATORS[estimator](logp, ref_logp)  # [B, L]
    return k if clamp is None else k.clamp(min=-clamp, max=clamp)


# ---------------------------------------------------------------- aggregation
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is set (0 where nothing is).

    >>> masked_mean(torch.tensor([[1., 3., 100.]]), torch.tensor([[1, 1, 0]]), dim=-1)
    tensor([2.])
    """
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


def aggregate(
    per_token: torch.Tensor,
    token_mask: torch.Tensor,
    keep: torch.Tensor | None = None,
    in_denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence token mean, then the mean over sequences.

    per_token: [B, L]; token_mask: [B, L] (completion tokens); keep: [B] sequences whose
    loss counts (the advantage filter); in_denominator: [B] sequences counted in the
    batch mean (default = ``keep``: the paper's filter; all ones: the R1-Reward code's).
    → scalar

    >>> x = torch.tensor([[1., 1., 0.], [4., 0., 0.], [9., 9., 9.]])
    >>> m = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    >>> keep = torch.tensor([True, True, False])
    >>> aggregate(x, m), aggregate(x, m, keep), aggregate(x, m, keep, torch.ones(3, dtype=torch.bool))
    (tensor(4.6667), tensor(2.5000), tensor(1.6667))
    """
    seq = masked_mean(per_token, token_mask, dim=-1)  # [B]
    keep = torch.ones_like(seq, dtype=torch.bool) if keep is None else keep
    denom = keep if in_denominator is None else in_denominator  # [B]
    return (seq * keep.to(seq.dtype)).sum() / denom.to(seq.dtype).sum().clamp(min=1.0)


# ------------------------------------------------------------ log-probs etc.
def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log π(target) from logits, in fp32 (bf16 log-softmax is too coarse for ratios).

    logits: [B, L, V], targets: [B, L] → [B, L]

    >>> token_logprobs(torch.zeros(1, 1, 4), torch.tensor([[2]])).exp()
    tensor([[0.2500]])
    """
    logits = logits.float() / temperature  # [B, L, V]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, L]
    return picked - torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of the policy's next-token distribution, in nats.

    logits: [B, L, V] → [B, L]

    >>> token_entropy(torch.zeros(1, 1, 4)) / math.log(4)
    tensor([[1.]])
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, L, V]
    return -(logp.exp() * logp).sum(-1)


def _chunk_logprobs(
    h: torch.Tensor,
    targets: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    temperature: float,
    with_entropy: bool,
    suppress: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: [c, H], [c] → log π(target) [c] and entropy [c] (zeros unless ``with_entropy``), fp32."""
    z = head(h).float()  # [c, V]: the only vocabulary-sized tensors live here
    if temperature != 1.0:
        z = z / temperature
    if suppress is not None:  # tokens the sampler never draws leave the normaliser too
        z = z.index_fill(-1, suppress, float("-inf"))
    lse = torch.logsumexp(z, dim=-1)  # [c]
    logp = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse  # [c]
    if not with_entropy:
        return logp, torch.zeros_like(lse)
    with torch.no_grad():
        logq = z.detach().clamp(min=torch.finfo(torch.float32).min).sub_(lse.detach().unsqueeze(-1))  # [c, V]
        ent = -(logq.exp().mul_(logq)).sum(-1)  # [c]
    return logp, ent


def chunked_token_logprobs(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    chunk: int = 256,
    with_entropy: bool = False,
    suppress_ids: Sequence[int] = (),
    recompute: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`token_logprobs` (and :func:`token_entropy`) from the last hidden states through the
    output head, ``chunk`` positions at a time, so [B, L, V] is never held.

    hidden: [B, L, H] (position t predicts ``targets[:, t]``); head: [N, H] → [N, V] logits (the
    model's output embedding); targets: [B, L]; mask: [B, L], only its positions are computed (0
    elsewhere); suppress_ids: tokens the sampler was forbidden (their logits are −inf here too, so
    the normaliser is the sampling distribution's). → (log π(target) [B, L] fp32, entropy [B, L]
    fp32 in nats or None).

    With gradients on, each chunk runs under non-reentrant activation checkpointing: only its
    [c, H] hidden states are saved and backward recomputes its logits, so the peak extra memory of
    forward + backward is O(chunk × V) fp32 whatever B and L (the approach of chunked / "fused
    linear" cross-entropy, e.g. Liger-Kernel; here in plain PyTorch). ``recompute=False`` keeps every
    chunk's logits for backward instead (faster, memory O(N × V)). The entropy never carries a
    gradient. Same values as the unchunked reference to fp32 rounding (tests/unit/rl). The head runs
    in the model's dtype (bf16 logits under bf16, then fp32): the logits HF generate and vLLM sample
    from, so log π and π/π_old match the sampler's distribution; the probe's entropy instead upcasts
    the head (:func:`egt.probe.entropy.blocked_entropy`, docs/design.md §3.1).

    Raises ValueError if ``chunk`` < 1.

    >>> head = torch.nn.Linear(2, 4, bias=False)
    >>> _ = torch.nn.init.zeros_(head.weight)
    >>> lp, ent = chunked_token_logprobs(torch.randn(1, 3, 2), head, torch.tensor([[0, 1, 2]]), chunk=2,
    ...                                  with_entropy=True)
    >>> lp.detach().exp(), ent / math.log(4)   # zero weights: uniform over V = 4
    (tensor([[0.2500, 0.2500, 0.2500]]), tensor([[1., 1., 1.]]))
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    from torch.utils.checkpoint import checkpoint

    B, L, H = hidden.shape
    flat_h, flat_t = hidden.reshape(B * L, H), targets.reshape(B * L).to(hidden.device)  # [B*L, H], [B*L]
    idx = (
        torch.arange(B * L, device=hidden.device)
        if mask is None
        else mask.to(hidden.device).reshape(-1).nonzero().squeeze(-1)
    )  # [N] positions computed
    grad = torch.is_grad_enabled()
    suppress = torch.tensor(sorted(set(suppress_ids)), dtype=torch.long, device=hidden.device) if suppress_ids else None
    logps, ents = [], []
    for start in range(0, idx.numel(), chunk):
        pos = idx[start : start + chunk]  # [c]
        args = (flat_h[pos], flat_t[pos], head, temperature, with_entropy, suppress)
        lp, ent = (
            checkpoint(_chunk_logprobs, *args, use_reentrant=False) if grad and recompute else _chunk_logprobs(*args)
        )
        logps.append(lp)
        ents.append(ent)
    zeros = torch.zeros(B * L, dtype=torch.float32, device=hidden.device)
    if not logps:
        return zeros.view(B, L), (zeros.view(B, L) if with_entropy else None)
    logp = zeros.index_put((idx,), torch.cat(logps)).view(B, L)  # out of place: differentiable
    ent = zeros.index_put((idx,), torch.cat(ents)).view(B, L) if with_entropy else None
    return logp, ent


def truncated(
    tokens: torch.Tensor, mask: torch.Tensor, stop_ids: list[int] | tuple[int, ...], max_new_tokens: int
) -> torch.Tensor:
    """Completions cut by the length limit: no stop token among their tokens and ``max_new_tokens`` long.
    A completion whose stop token lands in the batch's last column stopped; it was not truncated.

    tokens, mask: [B, L] → [B] bool

    >>> t = torch.tensor([[5, 9, 0], [5, 5, 9], [5, 5, 5]]); m = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]])
    >>> truncated(t, m, [9], max_new_tokens=3)
    tensor([False, False,  True])
    """
    is_stop = torch.zeros_like(tokens, dtype=torch.bool)
    for i in stop_ids:
        is_stop |= tokens == i
    has_stop = (is_stop & mask.bool()).any(-1)  # [B]
    return ~has_stop & (mask.sum(-1) >= max_new_tokens)


def completion_mask(tokens: torch.Tensor, stop_ids: list[int] | tuple[int, ...]) -> torch.Tensor:
    """1 for the generated tokens up to and including the first stop token, 0 after.

    tokens: [B, L] → [B, L] (long)

    >>> completion_mask(torch.tensor([[5, 6, 9, 0, 0], [5, 5, 5, 5, 5]]), [9])
    tensor([[1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1]])
    """
    is_stop = torch.zeros_like(tokens, dtype=torch.bool)
    for i in stop_ids:
        is_stop |= tokens == i
    # number of stops strictly before each position: 0 → still inside the completion
    before = torch.cumsum(is_stop.long(), dim=-1) - is_stop.long()  # [B, L]
    return (before == 0).long()
