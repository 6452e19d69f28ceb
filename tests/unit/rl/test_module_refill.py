"""RLModule with rl/filter=zero_variance and refill on the tiny model, through the real Lightning Trainer: a
reward whose accuracy term is set by prompt decides which groups are kept, so the updates are known by hand;
max_steps counts updates; a run killed mid-refill resumes from its last update boundary to the same updates."""

from collections import Counter

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from egt.data.encode import ChatEncoder
from egt.data.sampler import ResumableSampler
from egt.models.loader import load_model_and_processor
from egt.rl.advantages import GroupAdvantage
from egt.rl.losses import StableReinforceLoss
from egt.rl.module import RLModule
from egt.rl.rollout import HFGenerateBackend
from egt.rl.zero_variance import ZeroVarianceFilter
from egt.stages.rl import RolloutCheckpoint
from rl_stub import ShortIsGood  # tests/helpers

BATCH, G = 2, 2


class AccByPrompt(ShortIsGood):
    """R_acc set by prompt: the prompts in ``varied`` get 1, 0, 1, … over their G completions, the others 0
    for all; R = R_acc + the length bonus of ShortIsGood, so a dropped group's R still varies."""

    def __init__(self, varied: set[str]):
        super().__init__()
        self.varied = varied

    def terms(self, prompts, completions, label=None, **kw):
        t = super().terms(prompts, completions, label)
        seen: Counter = Counter()
        acc = []
        for p in prompts:
            acc.append(float(p["id"] in self.varied and seen[p["id"]] % 2 == 0))
            seen[p["id"]] += 1
        t.acc, t.reward = acc, [a + 1.0 - min(len(c), 200) / 200 for a, c in zip(acc, completions)]
        return t


@pytest.fixture(scope="module")
def world(world_small):
    return world_small["rl_pool"].select(range(10))


def _module(model_dir, world, varied_positions, max_updates=-1):
    model, proc = load_model_and_processor(model_dir)
    model.train()
    sampler = ResumableSampler(len(world), shuffle=False)
    ids = world["id"]
    m = RLModule(
        model,
        ChatEncoder(proc),
        AccByPrompt({ids[i] for i in varied_positions}),
        StableReinforceLoss(),
        GroupAdvantage(),
        ZeroVarianceFilter(refill=True, max_tries=2),
        HFGenerateBackend(),
        sampler,
        group_size=G,
        ppo_epochs=1,
        num_mini_batches=1,
        max_new_tokens=8,
        temperature=1.0,
        lr=1e-3,
        weight_decay=0.0,
        warmup_steps=0,
        max_grad_norm=1.0,
        kl_coef=0.0,
        kl_estimator="k3",
        kl_in="loss",
        max_updates=max_updates,
        batch_size=BATCH,
    )
    trained: list[list[str]] = []
    update = m._score_and_update

    def recording(ro, terms):
        trained.append([s["id"] for s in ro.samples])
        assert ro.size == len(ro.samples) * G and all(a in (0.0, 1.0) for a in terms.acc)
        return update(ro, terms)

    m._score_and_update = recording
    return m, DataLoader(world, batch_size=BATCH, sampler=sampler, collate_fn=list), trained


def _trainer(tmp_path, *callbacks):
    return L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=str(tmp_path),
        callbacks=list(callbacks),
    )


# 10 prompts in batches of 2, the varied ones at 1, 2, 3 and 8; max_tries 2:
#   [0 1] keeps 1 → [2 3] keeps 2, 3: update on 1, 2 (3 surplus; 0 dropped), 1 refill
#   [4 5] keeps none → [6 7] keeps none: max_tries spent, no update (4 dropped)
#   [8 9] keeps 8: the epoch's last batch, update on 8 alone
VARIED = (1, 2, 3, 8)


class Kill(L.Callback):
    """Raise after the ``at``-th rollout batch: the run ends there, with what last.ckpt holds (a kill -9)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch, idx):
        if module.rollouts == self.at:
            raise RuntimeError("killed")


def test_refill_updates_on_kept_groups_only(tiny_model_dir, world, tmp_path):
    m, loader, trained = _module(tiny_model_dir, world, VARIED)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    trainer = _trainer(tmp_path)
    trainer.fit(m, loader)
    ids = world["id"]
    assert trained == [[ids[1], ids[2]], [ids[8]]]  # the update batches: full, then the epoch's rest
    assert (m.rollouts, m.updates, m.prompts_generated, trainer.global_step) == (5, 2, 10, 2)
    h = m.history
    assert [e["ids"] for e in h] == [ids[0:4], ids[4:8], ids[8:10]]  # every draw, in curriculum order
    assert [e["trained_ids"] for e in h] == [[ids[1], ids[2]], [], [ids[8]]]
    stats = ("rl/groups_dropped", "rl/groups_surplus", "rl/refills", "rl/rollouts_per_update", "rl/update_skipped")
    assert [[e[k] for k in stats] for e in h] == [[1, 1, 1, 2, 0], [4, 0, 1, 2, 1], [1, 0, 0, 1, 0]]
    assert [e["step"] for e in h] == [1, 1, 2] and "rl/loss" not in h[1] and "rl/loss" in h[2]
    assert h[0]["rl/acc"] == pytest.approx(3 / 8)  # the 8 rows drawn (prompts 1, 2, 3: 1 of 2), not the 4 trained
    assert h[1]["rl/acc"] == 0.0 and h[0]["rl/adv_filtered"] == 0.0  # the update's batch: every group varied
    assert any(not torch.equal(before[k], v) for k, v in m.model.state_dict().items())


def test_max_steps_counts_updates_not_rollout_batches(tiny_model_dir, world, tmp_path):
    m, loader, trained = _module(tiny_model_dir, world, VARIED, max_updates=1)
    _trainer(tmp_path).fit(m, loader)
    assert (m.rollouts, m.updates, len(trained)) == (2, 1, 1)


def test_killed_mid_refill_resumes_to_the_same_updates(tiny_model_dir, world, tmp_path):
    """Killed after [4 5] (its groups all dropped, one try of the second update spent): last.ckpt is the one
    written after the first update (2 rollout batches, 4 prompts); the resumed run draws [4 5] again with
    the same seed and ends where the uninterrupted one does."""
    clean, loader, trained_clean = _module(tiny_model_dir, world, VARIED)
    _trainer(tmp_path / "clean").fit(clean, loader)

    last = tmp_path / "killed" / "last.ckpt"
    killed, loader, _ = _module(tiny_model_dir, world, VARIED)
    with pytest.raises(RuntimeError, match="killed"):
        _trainer(tmp_path / "killed", RolloutCheckpoint(last, 1), Kill(at=3)).fit(killed, loader)
    assert not killed.at_update_boundary and killed.refill.tries == 1
    saved = torch.load(last, weights_only=False)
    assert saved["egt_sampler"]["consumed"] == 4 and saved["egt_rl"]["rollouts"] == 2
    assert saved["egt_rl"]["updates"] == 1 and len(saved["egt_rl"]["history"]) == 1

    resumed, loader, trained_resumed = _module(tiny_model_dir, world, VARIED)
    _trainer(tmp_path / "killed", RolloutCheckpoint(last, 1)).fit(resumed, loader, ckpt_path=str(last))
    assert trained_resumed == trained_clean[1:]  # the first update was done before the kill
    assert (resumed.rollouts, resumed.updates) == (clean.rollouts, clean.updates) == (5, 2)
    for a, b in zip(resumed.history, clean.history, strict=True):
        assert a["ids"] == b["ids"] and a["trained_ids"] == b["trained_ids"]
        assert a["examples"] == b["examples"]  # the same completions were drawn
        assert {k: v for k, v in a.items() if k.startswith("rl/groups")} == {
            k: v for k, v in b.items() if k.startswith("rl/groups")
        }
    # the same operations in the same order in one process: equal up to fp32 rounding
    for k, v in clean.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_refill_on_several_ranks_stops_before_the_first_step(tiny_model_dir, world):
    """The module's own guard (validation refuses it earlier): no rank may skip a backward pass others run."""
    from types import SimpleNamespace

    from egt.errors import ConfigError

    m, _, _ = _module(tiny_model_dir, world, VARIED)
    m._trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match=r"rl.filter.refill=true runs on one process only for now \(2 here"):
        m.on_fit_start()
