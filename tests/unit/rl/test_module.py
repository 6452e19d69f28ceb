"""RL steps on the tiny model: parameters change, the ratio starts at 1, the reference is only
loaded with KL on, G = 1 works, the sampler order is the curriculum's."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from egt.data.encode import ChatEncoder
from egt.data.sampler import ResumableSampler
from egt.models.loader import load_model_and_processor
from egt.rl.advantages import BatchWhitenAdvantage, GroupAdvantage
from egt.rl.filters import NormalisedAdvantageFilter
from egt.rl.losses import StableReinforceLoss
from egt.rl.module import RLModule
from egt.rl.functional import token_entropy, token_logprobs
from egt.rl.rollout import HFGenerateBackend, completion_logits, logprobs_and_entropy, rollout, sequence_inputs
from rl_stub import ShortIsGood  # tests/helpers


def _module(
    model_dir,
    world,
    *,
    group_size=2,
    kl=0.0,
    advantage=None,
    ppo_epochs=1,
    num_mini_batches=2,
    skip_old_pass=True,
    kl_in="loss",
):
    model, proc = load_model_and_processor(model_dir)
    model.train()
    ref = load_model_and_processor(model_dir)[0] if kl > 0 else None
    sampler = ResumableSampler(len(world), shuffle=False)
    m = RLModule(
        model,
        ChatEncoder(proc),
        ShortIsGood(),
        StableReinforceLoss(),
        advantage or BatchWhitenAdvantage(),
        NormalisedAdvantageFilter(),
        HFGenerateBackend(),
        sampler,
        group_size=group_size,
        ppo_epochs=ppo_epochs,
        num_mini_batches=num_mini_batches,
        max_new_tokens=12,
        temperature=1.0,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=1.0,
        kl_coef=kl,
        kl_estimator="k3",
        kl_in=kl_in,
        ref_model=ref,
        max_updates=2,
        skip_old_pass_on_policy=skip_old_pass,
    )
    return m, DataLoader(world, batch_size=3, sampler=sampler, collate_fn=list)


def _fit(m, loader):
    L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    ).fit(m, loader)


@pytest.fixture(scope="module")
def world(world_small):
    return world_small["rl_pool"].select(range(8))


def test_rl_steps_change_parameters_and_log_every_term(tiny_model_dir, world):
    m, loader = _module(tiny_model_dir, world, kl=1e-3, ppo_epochs=2)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    _fit(m, loader)
    assert m.rollouts == 2 and len(m.history) == 2  # stopped by max_updates
    assert any(not torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    h = m.history[0]
    for key in (
        "rl/reward",
        "rl/acc",
        "rl/logic",
        "rl/format",
        "rl/parse_fail",
        "rl/adv_filtered",
        "rl/clip_frac",
        "rl/kl",
        "rl/entropy",
        "rl/response_len",
        "rl/grad_norm",
        "rl/samples_per_s",
        "rl/judge_not_asked",
        "rl/logprob_tokens",
        "rl/logprob_positions",
    ):
        assert torch.isfinite(torch.tensor(h[key])), key
    assert 0 < h["rl/logprob_tokens"] <= h["rl/logprob_positions"]  # padded rows: computed ≥ real
    assert h["rl/grad_norm"] > 0 and h["rl/kl"] == 0.0  # the policy is the reference before the first update
    assert m.history[1]["rl/kl"] > 0
    assert [x["ids"] for x in m.history] == [world["id"][:3], world["id"][3:6]]  # sampler order
    assert m.ref_model is not None and "_ref" not in dict(m.named_children())
    assert m.generation_summary() == {"generation_path": "plain"} and "rl/gather_s" not in h  # nothing partitioned


def test_first_ppo_epoch_is_on_policy(tiny_model_dir, world):
    model, proc = load_model_and_processor(tiny_model_dir)
    enc = ChatEncoder(proc)
    torch.manual_seed(0)
    ro = rollout(model, HFGenerateBackend(), enc, list(world.select(range(2))), 2, 10, 1.0)
    assert ro.completion_ids.shape[0] == 4 and len(ro.texts) == 4
    full, _ = logprobs_and_entropy(
        model, ro.prompt_feats, ro.completion_ids, ro.completion_mask, enc.tokenizer.pad_token_id
    )
    half, _ = logprobs_and_entropy(
        model, ro.prompt_feats[2:], ro.completion_ids[2:], ro.completion_mask[2:], enc.tokenizer.pad_token_id
    )
    m = ro.completion_mask[2:].bool()
    torch.testing.assert_close(full[2:][m], half[m], atol=1e-4, rtol=0)  # padding does not change log-probs


@pytest.mark.parametrize("chunk,batch", [(1, None), (5, 1), (256, 3), (7, 8)])
def test_chunked_micro_batched_logprobs_equal_the_full_logits_reference(tiny_model_dir, world, chunk, batch):
    model, proc = load_model_and_processor(tiny_model_dir)
    enc, pad = ChatEncoder(proc), proc.tokenizer.pad_token_id
    torch.manual_seed(1)
    ro = rollout(model, HFGenerateBackend(), enc, list(world.select(range(3))), 2, 10, 1.0)
    ids, mask = ro.completion_ids, ro.completion_mask
    logits = completion_logits(model, sequence_inputs(ro.prompt_feats, ids, mask, pad), ids.shape[1])  # [6, L, V]
    ref_lp, ref_ent = token_logprobs(logits, ids, 0.8), token_entropy(logits, 0.8)
    m = mask.bool()
    with torch.no_grad():
        lp, ent = logprobs_and_entropy(
            model, ro.prompt_feats, ids, mask, pad, 0.8, with_entropy=True, chunk_size=chunk, batch_size=batch
        )
    torch.testing.assert_close(lp[m], ref_lp[m].detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[m], ref_ent[m], atol=1e-5, rtol=0)
    # the gradient pass (chunks recomputed in backward) gives the reference's gradients
    w = torch.randn(mask.shape) * mask
    params = [p for p in model.parameters() if p.requires_grad]
    g_ref = torch.autograd.grad((ref_lp * w).sum(), params, allow_unused=True)
    lp_grad, _ = logprobs_and_entropy(model, ro.prompt_feats, ids, mask, pad, 0.8, chunk_size=chunk)
    g = torch.autograd.grad((lp_grad * w).sum(), params, allow_unused=True)
    for a, b in zip(g, g_ref):
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="no-grad passes"):
        logprobs_and_entropy(model, ro.prompt_feats, ids, mask, pad, batch_size=1)


def test_first_update_is_exactly_on_policy_under_a_shipped_generation_config(tiny_model_dir, world, tmp_path):
    import json
    import shutil

    shipped = tmp_path / "model"  # Qwen2.5-VL-7B-Instruct's generation_config.json on the tiny model
    shutil.copytree(tiny_model_dir, shipped)
    gen = json.loads((shipped / "generation_config.json").read_text())
    gen.update(do_sample=True, top_k=1, top_p=0.001, temperature=0.1, repetition_penalty=1.05)
    (shipped / "generation_config.json").write_text(json.dumps(gen))
    m, loader = _module(shipped, world, num_mini_batches=1, skip_old_pass=False)  # the separate π_old pass
    _fit(m, loader)
    for h in m.history:  # one optimizer step per rollout: π_θ = π_old when the loss is computed
        assert h["rl/ratio_mean"] == pytest.approx(1.0, abs=1e-6) and h["rl/clip_frac"] == 0.0


def _record_first_rollout(m) -> dict:
    """Wrap ``m``'s update so the first rollout leaves π_old of every row (after the update loop, when it is
    complete), the advantages, each update's loss and the gradient of the first update before clipping."""
    rec: dict = {"loss": [], "grad": None}
    update, backward, clip = m._update, m.manual_backward, m._clip

    def recording_update(ro, chunks, first_is_old, adv, *rest):
        out = update(ro, chunks, first_is_old, adv, *rest)
        if m.rollouts == 0:
            rec.update(old=ro.old_logp.clone(), mask=ro.completion_mask.bool(), adv=adv.clone())
        return out

    def recording_backward(loss, *a, **kw):
        if m.rollouts == 0:
            rec["loss"].append(float(loss.detach()))
        return backward(loss, *a, **kw)

    def recording_clip(params):
        if m.rollouts == 0 and rec["grad"] is None:
            rec["grad"] = [p.grad.detach().clone() for p in params]
        return clip(params)

    m._update, m.manual_backward, m._clip = recording_update, recording_backward, recording_clip
    return rec


@pytest.mark.parametrize(
    "mini,epochs,kl,kl_in,old_rows",
    [
        (1, 1, 0.0, "loss", 0),
        (1, 1, 1e-3, "loss", 0),  # one update: the gradient pass is π_old
        (2, 1, 1e-3, "loss", 3),
        (3, 2, 0.0, "loss", 4),  # the first mini-batch's rows need no pass
        (1, 2, 0.0, "loss", 0),  # one mini-batch, two epochs: none either
        (2, 1, 1e-3, "reward", 6),
    ],
)  # KL in the reward: every row's π_old first
def test_skipping_the_old_pass_changes_nothing(tiny_model_dir, world, monkeypatch, mini, epochs, kl, kl_in, old_rows):
    """π_old of the rows whose gradient pass runs before any update (the first mini-batch of the first
    epoch) is that pass's own log-probs: the same π_old, loss and gradient as with a separate no-grad pass
    over every row, and only the other rows (3 prompts × G 2 = 6 per rollout) go through one.

    What is compared is what the skip touches, before any optimizer step: trained parameters are not.
    The two runs differ only in which forward pass gives π_old (one batch of all 6 rows, or the gradient
    pass's own mini-batch: other padding and matmul blocking), so π_old differs by fp32 rounding only. A
    sum of n terms rounds to within ~n·eps·Σ|terms|; log π = z_y − logsumexp(z) sums V exponentials (and
    each logit z sums hidden-size terms, fewer than V here), so we allow |Δ log π_old| <= V·eps·max|log π|
    (tol, ~5e-4; measured on AVX2: 0 to 5e-7). The ratio exp(log π − log π_old) then differs by the same
    relative amount, and so do the loss (|Δ| <= tol·max|A|) and each gradient entry (<= tol·max|g|).
    After a step nothing of that kind holds: Adam divides by sqrt(v) + 1e-8, so a coordinate whose
    gradient is ~0 (a key bias under softmax, a patch-embedding weight the loss barely reaches) moves
    by up to lr whatever its sign, and a 1e-7 rounding difference of that gradient — which differs
    between CPUs' kernels (AVX2, AVX-512) — becomes an lr-sized (1e-3) difference of the parameter."""
    import egt.rl.module as module

    rows: list[int] = []
    real = module.logprobs_and_entropy

    def counting(model, feats, *args, **kw):
        if not torch.is_grad_enabled() and model is m.model:
            rows.append(len(feats))
        return real(model, feats, *args, **kw)

    monkeypatch.setattr(module, "logprobs_and_entropy", counting)
    recs = []
    for skip in (False, True):
        torch.manual_seed(0)
        rows.clear()
        m, loader = _module(
            tiny_model_dir, world, num_mini_batches=mini, ppo_epochs=epochs, kl=kl, kl_in=kl_in, skip_old_pass=skip
        )
        recs.append(_record_first_rollout(m))
        _fit(m, loader)
        assert sum(rows) == (6 if not skip else old_rows) * m.rollouts  # π_old rows through a no-grad pass
    a, b = recs
    mask = a["mask"]
    assert torch.equal(mask, b["mask"]) and torch.equal(a["adv"], b["adv"])  # the same rollout and rewards
    vocab = m.model.get_output_embeddings().weight.shape[0]
    tol = vocab * torch.finfo(torch.float32).eps * float(a["old"][mask].abs().max())
    torch.testing.assert_close(b["old"][mask], a["old"][mask], atol=tol, rtol=0)  # π_old of every row
    assert b["loss"][0] == pytest.approx(a["loss"][0], abs=tol * float(a["adv"].abs().max()))  # the first loss
    scale = max(float(g.abs().max()) for g in a["grad"])
    for name, ga, gb in zip([n for n, p in m.model.named_parameters() if p.requires_grad], a["grad"], b["grad"]):
        torch.testing.assert_close(gb, ga, atol=tol * scale, rtol=0, msg=name)  # the gradient before the step


def test_group_size_one_and_no_reference_without_kl(tiny_model_dir, world):
    m, loader = _module(tiny_model_dir, world, group_size=1, kl=0.0)
    _fit(m, loader)
    assert m.ref_model is None and m.rollouts == 2 and m.history[0]["rl/kl"] == 0.0


def test_group_advantage_zero_variance_gives_no_update(tiny_model_dir, world):
    class Flat(ShortIsGood):
        def terms(self, prompts, completions, label=None, **kw):
            t = super().terms(prompts, completions, label)
            t.reward = [1.0] * len(completions)
            return t

    m, loader = _module(tiny_model_dir, world, advantage=GroupAdvantage())
    m.reward = Flat()
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    _fit(m, loader)
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    assert m.history[0]["rl/grad_norm"] == 0.0
