"""UnifiedReward-Think's recipe through the real CLI on the tiny model: the rft stage (rejection-sampling
fine-tuning) killed mid-training and resumed ends with the model of an uninterrupted run; selection=incorrect
and RL from the rft model follow (experiment=unifiedreward_think)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from cli_runner import cli, done, kill_when

# The tiny model needs a harder SFT than experiment=quick's to write well-formed verdicts at all (12 epochs
# at lr 3e-3, 96 steps: rft keeps 28 of the 32 samples' draws, accuracy ~chance; 30 epochs kept 24 at 2.5× the
# time), and a cooler, smaller probe; rft then trains 4 epochs on its kept draws with a checkpoint every 2 steps,
# so a kill lands mid-training.
ARGS = [
    "experiment=[quick,unifiedreward_think]",
    "eval.order=official",
    "logger=none",
    "sft.epochs=12",
    "sft.lr=3e-3",
    "sft.eval_n=0",
    "probe.temperature=0.7",
    "probe.n=4",
    "data.world.n_rl=32",
    "+rft.sft.epochs=4",
    "+rft.sft.checkpoint_every_n_steps=2",
    "+rft.sft.eval_n=8",
]
UPSTREAM = "stages=[data,distill,sft,probe]"


def _summary(path):
    return json.loads((path / "_SUCCESS.json").read_text())


@pytest.mark.slow
def test_killed_rft_resumes_to_the_same_model_and_rl_starts_from_it(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cli(killed, *ARGS, UPSTREAM)  # the shared upstream, once; the clean run gets a copy of it
    shutil.copytree(killed, clean, ignore=shutil.ignore_patterns("logs", "runs", "popen.log"))
    whole = [*ARGS, "stages=[data,distill,sft,probe,rft,select,rl]", "rl.max_steps=1"]
    kill_when(
        cli(killed, *whole, popen=True),
        lambda: any(
            not (p.parents[1] / "_SUCCESS.json").exists() for p in (killed / "rft").glob("*/checkpoints/last.ckpt")
        ),
        killed,
        "an rft checkpoint",
    )
    assert not done(killed, "rft")
    out = cli(killed, *whole)
    assert "[rft] resuming from" in out and "[sft] reusing" in out and "[probe] reusing" in out
    cli(clean, *ARGS, "stages=[data,distill,sft,probe,rft]")

    (a,), (b,) = done(killed, "rft"), done(clean, "rft")
    assert a.name == b.name  # same config, same upstream: the same key
    sa, sb = _summary(a)["summary"], _summary(b)["summary"]
    assert sa["resumed"] and not sb["resumed"] and sa["steps"] == sb["steps"] > 0
    assert sa["kept"] == sb["kept"] > 0 and sa["kept"] == sa["kept_samples"] == sa["n_train"] + sa["n_val"]
    assert 0 <= sa["flipped_kept"] <= sa["kept"] and "flipped_rate" in sa and "bench_accuracy" in sa
    wa, wb = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:  # one process, the same machine: the same sums in the same order (as sft's resume test)
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)

    upstream = _summary(a)["upstream"]
    (probe,), (sft,) = done(killed, "probe"), done(killed, "sft")
    assert upstream["probe"] == probe.name and upstream["sft"] == sft.name
    (select,), (rl,) = done(killed, "select"), done(killed, "rl")
    sel = _summary(select)["summary"]
    assert sel["method"] == "incorrect" and sel["accuracy_kept"] == 0.0 and "flipped_kept" in sel
    assert _summary(rl)["upstream"]["rft"] == a.name  # RL started from the rft model

    # rft.reprobe=true: the select stage probes the pool again with the rft judge (the judge RL starts from);
    # the SFT judge's probe, rft and sft are reused
    out = cli(killed, *whole, "rft.reprobe=true")
    assert "[rft] reusing" in out
    probes = {p.name: _summary(p)["upstream"]["model"] for p in done(killed, "probe")}
    (again,) = [k for k, model in probes.items() if model == f"rft:{a.name}"]
    selects = [s for s in done(killed, "select") if s.name != select.name]
    assert [_summary(s)["upstream"]["probe"] for s in selects] == [again]
