"""The rl stage through the real CLI on the tiny model: the full quick pipeline, a run on a given
selection (curriculum order, parameters change, the HF dir reloads), kill -9 and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_runner import QUICK, cli, done, kill_when

STUB = "reward._target_=tests.helpers.rl_stub.ShortIsGood"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The whole quick pipeline through select and a few RL steps."""
    art = tmp_path_factory.mktemp("rl-artifacts")
    out = cli(
        art,
        *QUICK,
        "stages=[data,distill,sft,probe,select,rl]",
        "rl.max_steps=2",
        "rl.eval_n=4",
        "rl.max_new_tokens=16",
        "sft.eval_n=0",
        "logger=csv",
    )
    return art, out


@pytest.fixture(scope="module")
def selection(base, tmp_path_factory):
    from datasets import load_from_disk

    art, _ = base
    ids = load_from_disk(str(done(art, "data")[0] / "dataset"))["rl_pool"]["id"]
    order = [ids[i] for i in (9, 2, 7, 0, 5, 11, 3)]  # 7 samples: batches of 4 do not divide them
    path = tmp_path_factory.mktemp("sel") / "selection.json"
    path.write_text(json.dumps({"ids": order, "shuffle_each_epoch": False, "seed": 0}))
    return path, order


def _args(base, selection, *extra):
    art, _ = base
    return [
        *QUICK,
        "stages=[rl]",
        f"sft.model_path={done(art, 'sft')[0] / 'model'}",
        f"rl.selection_path={selection[0]}",
        STUB,
        "rl.max_new_tokens=16",
        "logger=none",
        *extra,
    ]


def _with_data(base, dest: Path) -> Path:
    shutil.copytree(done(base[0], "data")[0], dest / "data" / done(base[0], "data")[0].name)
    return dest


def test_full_pipeline_runs_rl_after_select(base):
    art, out = base
    (rl,) = done(art, "rl")
    summary = json.loads((rl / "_SUCCESS.json").read_text())["summary"]
    assert summary["steps"] == 2 and "bench_accuracy" in summary
    assert summary["generation_path"] == "plain" and "gather_s_per_rollout" not in summary  # no ZeRO-3 on CPU
    assert "[select] computing artifact" in out and "[rl] computing artifact" in out
    sel = json.loads((done(art, "select")[0] / "selection.json").read_text())
    curves = json.loads((rl / "curves.json").read_text())["steps"]
    seen = [i for step in curves for i in step["ids"]]
    assert seen == sel["ids"][: len(seen)]  # the curriculum's order
    metrics = (art / "logs").rglob("metrics.csv")
    assert any("rl/reward" in p.read_text() for p in metrics), "rl metrics should be in the csv log"


def test_rl_on_a_given_selection(base, selection, tmp_path):
    art = _with_data(base, tmp_path)
    cli(art, *_args(base, selection, "rl.epochs=2", "rl.eval_n=0"))
    (rl,) = done(art, "rl")
    curves = json.loads((rl / "curves.json").read_text())["steps"]
    order = selection[1]
    assert [s["ids"] for s in curves] == [order[:4], order[4:], order[:4], order[4:]]  # 7 = 4 + 3, two epochs
    for step in curves:
        assert all(torch.isfinite(torch.tensor(float(v))) for k, v in step.items() if k.startswith("rl/"))
    assert any(s["rl/grad_norm"] > 0 for s in curves)
    before = load_file(done(base[0], "sft")[0] / "model" / "model.safetensors")
    after = load_file(rl / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)

    from egt.data.encode import ChatEncoder
    from egt.eval.generation import generate
    from egt.models import load_model_and_processor
    from datasets import load_from_disk

    model, processor = load_model_and_processor(rl / "model")
    bench = load_from_disk(str(done(art, "data")[0] / "dataset"))["bench"]
    assert len(generate(model, ChatEncoder(processor), [bench[0]], max_new_tokens=4, batch_size=1)) == 1


def test_empty_selection_fails_clearly(base, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"ids": [], "shuffle_each_epoch": False, "seed": 0}))
    art = _with_data(base, tmp_path / "a")
    with pytest.raises(AssertionError, match="the selection is empty"):
        cli(art, *_args(base, (empty, [])))


def test_zero_variance_filter_with_refill(base, selection, tmp_path):
    """rl/filter=zero_variance rl.filter.refill=true through the CLI: a reward whose accuracy term varies
    in the groups of a third of the prompts (tests.helpers.rl_stub.varies: here the 2nd, 5th and 6th of
    the 7, o1 o4 o5), batches of 2, at most 2 rollout batches per update, 2 epochs, 3 updates:
    [o0 o1] keeps o1, [o2 o3] none: max_tries, update on o1; [o4 o5] keeps both: update; [o6] none, the
    epoch's end: no update; epoch 1: [o0 o1], [o2 o3]: update on o1, the third: stop."""
    from rl_stub import varies

    order = selection[1]
    assert [varies(i) for i in order] == [False, True, False, False, True, True, False]
    art = _with_data(base, tmp_path)
    refill = ("rl/filter=zero_variance", "rl.filter.refill=true", "rl.filter.max_tries=2")
    out = cli(
        art,
        *_args(base, selection, *refill, "rl.batch_size=2", "rl.epochs=2", "rl.max_steps=3", "rl.eval_n=0"),
        "reward._target_=tests.helpers.rl_stub.AccVariesByPrompt",
    )
    assert "[rl] refill: each update draws rollout batches of 2 prompts until 2 groups are kept" in out
    assert "no group kept in 1 rollout batches (1 prompts): update skipped" in out
    (rl,) = done(art, "rl")
    summary = json.loads((rl / "_SUCCESS.json").read_text())["summary"]
    assert (summary["steps"], summary["rollout_batches"], summary["prompts_generated"]) == (3, 6, 11)
    assert summary["optimizer_steps"] == 6  # 3 updates × 2 mini-batches (o1 alone: its 2 rows, one each)
    assert (summary["updates_skipped"], summary["groups_dropped"], summary["groups_surplus"]) == (1, 7, 0)
    curves = json.loads((rl / "curves.json").read_text())["steps"]
    o = order
    assert [s["ids"] for s in curves] == [o[0:4], o[4:6], o[6:7], o[0:4]]
    assert [s["trained_ids"] for s in curves] == [[o[1]], [o[4], o[5]], [], [o[1]]]
    assert [s["rl/refills"] for s in curves] == [1, 0, 0, 1] and [s["step"] for s in curves] == [1, 2, 2, 3]
    for step in curves:
        assert all(torch.isfinite(torch.tensor(float(v))) for k, v in step.items() if k.startswith("rl/"))
    before = load_file(done(base[0], "sft")[0] / "model" / "model.safetensors")
    after = load_file(rl / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_packed_shared_prompt_pass_under_checkpointing_matches_every_row_whole(base, selection, tmp_path):
    """rl.shared_prompt_pass=packed with model.gradient_checkpointing=true (where the cache path declines
    the gradient pass) through the CLI: the packed path runs in every pass and the update's loss and
    gradient norm are the full pass's (one update; the same completions, drawn before it)."""
    args = _args(base, selection, "rl.max_steps=1", "rl.eval_n=0", "model.gradient_checkpointing=true")
    packed, whole = _with_data(base, tmp_path / "packed"), _with_data(base, tmp_path / "whole")
    out = cli(packed, *args, "rl.shared_prompt_pass=packed")
    assert "rl.shared_prompt_pass=packed: one row per group" in out and "running every row whole" not in out
    cli(whole, *args, "rl.shared_prompt_pass=false")
    (a,), (b,) = done(packed, "rl"), done(whole, "rl")
    assert a.name == b.name  # the same key: the mode changes how, not what
    (ca,), (cb,) = (json.loads((p / "curves.json").read_text())["steps"] for p in (a, b))
    assert ca["examples"] == cb["examples"]
    for k in ("rl/loss", "rl/grad_norm", "rl/entropy"):  # fp32 sums over the tiny model; after ≤ 1 optimizer step
        assert ca[k] == pytest.approx(cb[k], rel=1e-3, abs=1e-5), k
    # rl.packing=true on top (groups at their real length, both groups in one row of ≤ 4,096 tokens)
    packing = _with_data(base, tmp_path / "packing")
    out = cli(packing, *args, "rl.shared_prompt_pass=packed", "rl.packing=true", "rl.packing_max_tokens=4096")
    assert "rl.packing: " in out and "units (groups) in 1 rows" in out and "running unpacked rows" not in out
    (c,) = done(packing, "rl")
    assert c.name == b.name  # not in the key
    (cc,) = json.loads((c / "curves.json").read_text())["steps"]
    assert cc["examples"] == cb["examples"]
    for k in ("rl/loss", "rl/grad_norm", "rl/entropy"):
        assert cc[k] == pytest.approx(cb[k], rel=1e-3, abs=1e-5), k
    assert cc["rl/logprob_tokens"] == ca["rl/logprob_tokens"] < cb["rl/logprob_tokens"]  # each prompt once a group
    assert cc["rl/logprob_tokens"] <= cc["rl/logprob_positions"] <= ca["rl/logprob_positions"]  # no inner padding


@pytest.mark.slow
def test_killed_rl_resumes_to_the_same_model(base, selection, tmp_path):
    args = _args(base, selection, "rl.epochs=2", "rl.max_steps=3", "rl.checkpoint_every_n_steps=1", "rl.eval_n=0")
    killed, clean = _with_data(base, tmp_path / "killed"), _with_data(base, tmp_path / "clean")
    kill_when(
        cli(killed, *args, popen=True),
        lambda: bool(list((killed / "rl").glob("*/checkpoints/last.ckpt"))),
        killed,
        "an RL checkpoint",
    )
    assert not done(killed, "rl")
    assert "[rl] resuming from" in cli(killed, *args)
    cli(clean, *args)
    (a,), (b,) = done(killed, "rl"), done(clean, "rl")
    sa, sb = (json.loads((p / "_SUCCESS.json").read_text())["summary"] for p in (a, b))
    assert sa["steps"] == sb["steps"] == 3 and sa["resumed"] and not sb["resumed"]
    ca, cb = (json.loads((p / "curves.json").read_text())["steps"] for p in (a, b))
    assert [s["ids"] for s in ca] == [s["ids"] for s in cb]
    assert [s["examples"] for s in ca] == [s["examples"] for s in cb]  # the same completions were drawn
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_reprobe_gives_the_probe_stage_table_for_that_checkpoint(base):
    """The online curriculum's re-probe (the policy in memory, loaded for training as RL does) equals the
    probe stage's table for the same checkpoint (here the SFT model the base pipeline probed)."""
    import pandas as pd
    from datasets import load_from_disk
    from hydra import compose, initialize_config_dir

    import egt.config  # noqa: F401
    from egt.models.resolve import load_for_training
    from egt.probe.probe import probe_with

    art, _ = base
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[2] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(QUICK))
    model, processor = load_for_training(done(art, "sft")[0] / "model", cfg)
    pool = load_from_disk(str(done(art, "data")[0] / "dataset"))["rl_pool"]
    expected = pd.read_parquet(done(art, "probe")[0] / "probe.parquet")
    assert len(expected) == len(pool) and cfg.probe.batch_size == 32
    n = 32  # the probe stage's first batch, as it was batched there (padding is per batch)
    got = probe_with(cfg, model.train(), processor, pool.select(range(n)), art / "reprobe-test")
    assert model.training  # left as it was
    pd.testing.assert_frame_equal(got, expected.iloc[:n])


def test_killed_online_rl_resumes_with_the_same_order_and_model(base, selection, tmp_path):
    """curriculum=ascending_online: killed right after the re-probe of epoch 1 was written (before that
    epoch's first step, or just after), the rerun reads it back (no second re-probe) and ends where an
    uninterrupted run does: same order, same completions, same model."""
    args = _args(
        base, selection, "curriculum=ascending_online", "rl.epochs=2", "rl.checkpoint_every_n_steps=1", "rl.eval_n=0"
    )
    killed, clean = _with_data(base, tmp_path / "killed"), _with_data(base, tmp_path / "clean")
    kill_when(
        cli(killed, *args, popen=True),
        lambda: bool(list((killed / "rl").glob("*/reprobe/epoch_1.json"))),
        killed,
        "the re-probe of epoch 1",
    )
    assert not done(killed, "rl")
    resumed = cli(killed, *args)
    assert "[rl] resuming from" in resumed and "[rl] re-probing" not in resumed
    assert "[rl] re-probing 7 samples with the policy before epoch 1" in cli(clean, *args)
    (a,), (b,) = done(killed, "rl"), done(clean, "rl")
    ra, rb = (json.loads((p / "reprobe" / "epoch_1.json").read_text()) for p in (a, b))
    ra.pop("seconds"), rb.pop("seconds")
    assert ra == rb and sorted(ra["ids"]) == sorted(selection[1])
    ca, cb = (json.loads((p / "curves.json").read_text())["steps"] for p in (a, b))
    assert [s["ids"] for s in ca] == [s["ids"] for s in cb] and [s["epoch"] for s in cb] == [0, 0, 1, 1]
    assert [i for s in cb[2:] for i in s["ids"]] == ra["ids"]  # epoch 1 follows the re-probe's order
    assert [s["examples"] for s in ca] == [s["examples"] for s in cb]
    summary = json.loads((b / "_SUCCESS.json").read_text())["summary"]
    assert [r["epoch"] for r in summary["reprobe"]] == [1] and len(summary["rl_seconds_per_epoch"]) == 2
    assert summary["reprobes"] == 1 and summary["reprobe_seconds"] > 0 and "reprobe_last_spearman_previous" in summary
    assert ra["generation_path"] == "plain" and summary["reprobe"][0]["generation_path"] == "plain"
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_killed_two_stage_rl_resumes_to_the_same_model(base, selection, tmp_path):
    order = selection[1]
    staged = tmp_path / "two_stage.json"  # stage 1: the first five; stage 2 adds the last two, hinted
    staged.write_text(
        json.dumps(
            {"ids": order, "shuffle_each_epoch": False, "seed": 0, "stages": {"stage1_epochs": 1, "hard": order[5:]}}
        )
    )
    args = [
        *_args(base, (staged, order), "rl.epochs=2", "rl.checkpoint_every_n_steps=1", "rl.eval_n=0"),
        "selection=pass_rate",
        "probe.n=8",
        "probe.temperature=1.0",
        "curriculum=two_stage",
        "data.hints='Hint: hard.'",
    ]
    killed, clean = _with_data(base, tmp_path / "killed"), _with_data(base, tmp_path / "clean")
    kill_when(
        cli(killed, *args, popen=True),
        lambda: bool(list((killed / "rl").glob("*/checkpoints/last.ckpt"))),
        killed,
        "an RL checkpoint",
    )
    assert "[rl] resuming from" in cli(killed, *args)
    cli(clean, *args)
    (a,), (b,) = done(killed, "rl"), done(clean, "rl")
    ca, cb = (json.loads((p / "curves.json").read_text())["steps"] for p in (a, b))
    assert [s["ids"] for s in ca] == [s["ids"] for s in cb] == [order[:4], order[4:5], order[:4], order[4:]]
    assert [s["examples"] for s in ca] == [s["examples"] for s in cb]  # the same completions were drawn
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
