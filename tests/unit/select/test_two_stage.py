"""curriculum=two_stage (egt.select.two_stage): the order of each epoch on a hand-made table, the split at
its boundary, hinted rows, resumption mid-stage, and that the hint reaches the prompt RL encodes."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from egt.select.curriculum import Ascending, Shuffle, epoch_ids, make_sampler
from egt.select.methods import PassRateBand
from egt.select.scores import Difficulty
from egt.select.selection import select
from egt.select.two_stage import HintedRows, TwoStage, TwoStageSampler, is_hard

# Pass rates over n = 8 draws. PassRateBand [0.1, 0.87] drops a (0/8) and g (7/8 = 0.875).
# Difficulty 1 − p: f .25, e .375, d .5, i .5, h .625, c .75, b .875 → ascending (ties by id): f e d i h c b.
# split 0.5: hard (p < 0.5) = h c b; moderate = f e d i (d and i sit on the split: moderate).
TABLE = pd.DataFrame(
    {
        "id": list("abcdefghi"),
        "correct_score": [k / 8 for k in (0, 1, 2, 4, 5, 6, 7, 3, 4)],
    }
)


def two_stage(curriculum=None, seed=0):
    return select(TABLE, Difficulty(), PassRateBand(), curriculum or TwoStage(0.5, 2), curriculum_seed=seed)


def test_two_stage_order_on_a_hand_made_table():
    s = two_stage()
    assert s["ids"] == list("fedihcb")
    assert s["stages"] == {"stage1_epochs": 2, "split": 0.5, "hard": list("hcb")}
    assert epoch_ids(s, 0) == epoch_ids(s, 1) == list("fedi")  # stage 1: the moderate ones, easy first
    assert epoch_ids(s, 2) == epoch_ids(s, 3) == list("fedihcb")  # stage 2: all of them
    smp = make_sampler(s, 7, hinted=True)
    assert smp.order(1) == [0, 1, 2, 3] and smp.order(2) == [0, 1, 2, 3, 7 + 4, 7 + 5, 7 + 6]  # h c b hinted
    assert make_sampler(s, 7).order(2) == list(range(7))  # no hints: the plain rows


def test_single_stage_selections_are_unchanged():
    plain = select(TABLE, Difficulty(), PassRateBand(), Ascending())
    assert "stages" not in plain and plain["ids"] == list("fedihcb")
    assert type(make_sampler(plain)) is not TwoStageSampler


def test_a_pass_rate_equal_to_the_split_is_moderate():
    rates = np.array([k / 10 for k in range(11)])
    assert is_hard(1.0 - rates, 0.3).tolist() == [True] * 3 + [False] * 8  # 0.3 read back as 0.30000000000000004
    assert is_hard(1.0 - rates, 0.7).tolist() == [True] * 7 + [False] * 4


def test_shuffle_within_stages_keeps_each_stage_set_and_reshuffles():
    s = two_stage(TwoStage(0.5, 1, within=Shuffle()), seed=3)
    assert s["shuffle_each_epoch"] and sorted(s["ids"]) == sorted("fedihcb")
    e = [epoch_ids(s, k) for k in range(4)]
    assert e[0] == [i for i in s["ids"] if i in "fedi"]  # stage 1: the stored order's moderate ones
    assert sorted(e[1]) == sorted(e[2]) == sorted("fedihcb") and e[1] != e[2]  # stage 2: a permutation per epoch
    assert epoch_ids(two_stage(TwoStage(0.5, 1, within=Shuffle()), seed=3), 2) == e[2]  # seeded


def test_epochs_differ_in_length_so_the_loader_has_none():
    smp = make_sampler(two_stage(), 7)
    assert [smp.epoch_length(e) for e in range(4)] == [4, 4, 7, 7]
    loader = DataLoader(list(range(7)), batch_size=3, sampler=smp, collate_fn=list)
    with pytest.raises(TypeError):
        len(loader)  # Lightning then runs each epoch to the iterator's end
    smp.set_epoch(2)
    assert [b for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    shard = make_sampler(two_stage(), 7).shard(1, 2)
    assert shard.local_order(0) == [1, 3] and shard.local_order(2) == [1, 3, 5, 0]  # 7 wrapped to 8


def test_sampler_resumes_mid_stage_two_like_an_uninterrupted_run():
    s = two_stage()
    whole = make_sampler(s, 7, hinted=True)
    whole.set_epoch(2)
    uninterrupted = list(whole)
    run = make_sampler(s, 7, hinted=True)
    run.set_epoch(2)
    it = iter(run)
    seen = [next(it) for _ in range(5)]
    run.advance(5)  # five samples trained on, then the job is killed
    resumed = make_sampler(s, 7, hinted=True)
    resumed.load_state_dict(run.state_dict())
    resumed.set_epoch(2)
    assert seen + list(resumed) == uninterrupted == [0, 1, 2, 3, 11, 12, 13]


def test_hinted_rows_add_the_hint_to_row_i_only():
    ds = [{"id": "x", "query": "q"}, {"id": "y", "query": "r"}]
    rows = HintedRows(ds, "Hint: hard.")
    assert len(rows) == 4 and rows[0] == ds[0] and "hint" not in rows[1]
    assert rows[3] == {"id": "y", "query": "r", "hint": "Hint: hard."} and "hint" not in ds[1]
    with pytest.raises(IndexError):
        rows[4]


def test_bad_settings_say_what_to_write():
    with pytest.raises(ValueError, match="split"):
        TwoStage(split=0.0)
    with pytest.raises(ValueError, match="stage1_epochs"):
        TwoStage(stage1_epochs=0)
    with pytest.raises(TypeError, match="within"):
        TwoStage(within=TwoStage())
    with pytest.raises(ValueError, match="stage 1 would be empty"):
        two_stage(TwoStage(split=1.0))  # every kept pass rate is below 1
    bad = {**two_stage(), "stages": {"stage1_epochs": 1, "split": 0.5, "hard": ["zz"]}}
    with pytest.raises(ValueError, match="not in its ids"):
        make_sampler(bad)


def test_the_rollout_and_its_logprob_passes_see_the_hinted_prompt(tiny_model_dir, world_small):
    from egt.data.encode import ChatEncoder
    from egt.models.loader import load_model_and_processor
    from egt.rl.rollout import HFGenerateBackend, rollout, sequence_inputs

    model, proc = load_model_and_processor(tiny_model_dir)
    enc = ChatEncoder(proc, template="minimal")
    hint = "Hint: this comparison is hard."
    rows = HintedRows(world_small["rl_pool"].select(range(2)), hint)
    plain, hinted = rows[0], rows[3]  # sample 0 as is, sample 1 with the hint
    torch.manual_seed(0)
    ro = rollout(model, HFGenerateBackend(), enc, [plain, hinted], 1, 4, 1.0)
    texts = [proc.tokenizer.decode(f["input_ids"]) for f in ro.prompt_feats]
    assert hint not in texts[0] and texts[1].count(hint) == 1
    assert torch.equal(ro.prompt_feats[0]["input_ids"], enc.encode_prompt(world_small["rl_pool"][0])["input_ids"])
    assert torch.equal(ro.prompt_feats[1]["input_ids"], enc.encode_prompt(hinted)["input_ids"])
    assert hint not in enc.prompt_text(world_small["rl_pool"][1])  # the data set's own row carries none
    # the log-prob passes rebuild [prompt | completion] from the rollout's own prompt features
    seq = sequence_inputs(ro.prompt_feats, ro.completion_ids, ro.completion_mask, proc.tokenizer.pad_token_id)
    assert hint in proc.tokenizer.decode(seq["input_ids"][1]) and hint not in proc.tokenizer.decode(seq["input_ids"][0])


def test_a_stage_one_of_a_fixed_length_repeats_the_moderate_rows_then_stage_two_follows():
    from egt.rl.module import _epoch_length

    s = TwoStageSampler(5, hard=[1, 3], stage1_epochs=1, hinted=True, stage1_length=5)
    assert s.order(0) == [0, 2, 4, 0, 2]  # the moderate rows in stored order, again from the start, cut at 5
    assert s.order(1) == [0, 5 + 1, 2, 5 + 3, 4]  # stage 2: every row, the hard ones hinted
    assert s.epoch_length(0) == 5 and _epoch_length(s) == 5  # what refill's end-of-epoch test reads
    short = TwoStageSampler(5, hard=[1, 3], stage1_epochs=1, stage1_length=2)
    assert short.order(0) == [0, 2]
    with pytest.raises(ValueError, match="stage1_epochs=1"):
        TwoStageSampler(5, hard=[1], stage1_epochs=2, stage1_length=3)


def test_stage1_share_is_in_the_stages_only_when_set():
    ids, scores = np.array(["a", "b", "c"]), np.array([0.2, 0.8, 0.4])  # pass rates .8, .2, .6
    assert "stage1_share" not in TwoStage().stages(ids, scores)
    assert TwoStage(stage1_share=0.5).stages(ids, scores)["stage1_share"] == 0.5
    with pytest.raises(ValueError, match="stage1_share"):
        TwoStage(stage1_share=1.0)
