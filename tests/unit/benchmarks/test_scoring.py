"""Official scoring and egt's extras on hand-made predictions, with hand-worked expected values."""

from __future__ import annotations

import pytest

from egt.benchmarks import metrics as M
from egt.benchmarks.mm_rlhf_rewardbench import MMRLHFRewardBench
from egt.benchmarks.multimodal_rewardbench import MultimodalRewardBench
from egt.benchmarks.vl_rewardbench import VLRewardBench
from egt.eval.runner import compute_metrics


def rec(cat, label, pred, id_=None, group=None, view="official", votes=None):
    return {
        "id": id_ or f"{cat}-{label}-{pred}",
        "group": group or id_,
        "category": cat,
        "label": label,
        "pred": pred,
        "view": view,
        "votes": votes or [pred],
        "format_ok": pred is not None,
    }


def test_vl_rewardbench_micro_macro_and_excluded_failures():
    # reasoning 1/1, hallucination 2/3 (+1 unparsed, excluded), general 0/1
    records = [
        rec("reasoning", 1, 1, "a"),
        rec("hallucination", 1, 1, "b"),
        rec("hallucination", 2, 2, "c"),
        rec("hallucination", 2, 1, "d"),
        rec("hallucination", 1, None, "e"),
        rec("general", 1, 2, "f"),
    ]
    m = VLRewardBench().score(records)
    assert m["category/reasoning"] == 1.0 and m["category/hallucination"] == pytest.approx(2 / 3)
    assert m["category/general"] == 0.0
    assert m["overall"] == pytest.approx(3 / 5)  # micro over the 5 parsed
    assert m["macro"] == pytest.approx((1 + 2 / 3 + 0) / 3) == m["headline"]
    assert m["n"] == 6 and m["n_scored"] == 5
    extra = compute_metrics(VLRewardBench(), records)
    assert extra["parse_failures"] == 1 and extra["strict/overall"] == pytest.approx(3 / 6)


def test_multimodal_rewardbench_coin_flip_seed_123():
    # random.Random(123) draws 0.0524, 0.0872, 0.4072, 0.1077, 0.9012: < 0.5 → "A" (1), else 2
    records = [
        rec("vqa", 1, None, "a"),
        rec("vqa", 2, None, "b"),
        rec("vqa", 1, 1, "c"),
        rec("knowledge", 1, None, "d"),
        rec("knowledge", 2, None, "e"),
        rec("knowledge", 2, None, "f"),
    ]
    # flips: a→1 ✓, b→1 ✗, d→1 ✓, e→1 ✗, f→2 ✓  → vqa 2/3, knowledge 2/3, overall 4/6
    m = MultimodalRewardBench().score(records)
    assert m["category/vqa"] == pytest.approx(2 / 3) and m["category/knowledge"] == pytest.approx(2 / 3)
    assert m["overall"] == pytest.approx(4 / 6) == m["headline"]
    assert MultimodalRewardBench().score(records) == m  # reproducible
    assert compute_metrics(MultimodalRewardBench(), records)["strict/overall"] == pytest.approx(1 / 6)


def test_multimodal_rewardbench_areas_pool_the_splits():
    records = [
        rec("reasoning/math", 1, 1, "a"),
        rec("reasoning/coding", 1, 2, "b"),
        rec("reasoning/coding", 1, 1, "c"),
        rec("safety/bias", 2, 2, "d"),
        rec("safety/toxicity", 2, 1, "e"),
    ]
    m = MultimodalRewardBench().score(records)
    assert m["category/reasoning/coding"] == 0.5 and m["area/reasoning"] == pytest.approx(2 / 3)
    assert m["area/safety"] == 0.5 and m["area/vqa"] is None


def test_mm_rlhf_acc_and_acc_plus():
    records = [
        rec("mcq", 1, 1, "g1#1", "g1"),
        rec("mcq", 1, 1, "g1#2", "g1"),  # group all right
        rec("mcq", 1, 2, "g2#1", "g2"),
        rec("mcq", 1, 1, "g2#2", "g2"),  # one wrong
        rec("video", 1, None, "g3#1", "g3"),
        rec("video", 1, 1, "g3#2", "g3"),
    ]  # unparsed = wrong
    m = MMRLHFRewardBench().score(records)
    assert m["overall"] == pytest.approx(4 / 6) and m["category/mcq"] == 0.75 and m["category/video"] == 0.5
    assert m["acc_plus"] == pytest.approx(1 / 3) and m["groups"] == 3
    assert m["acc_plus/category/mcq"] == 0.5 and m["acc_plus/category/video"] == 0.0


def test_order_both_per_order_accuracy_and_consistency():
    # item a: right in both orders (consistent); b: always "1" (inconsistent); c: unparsed swapped
    official = [rec("general", 1, 1, "a"), rec("general", 1, 1, "b"), rec("general", 2, 2, "c")]
    swapped = [
        rec("general", 2, 2, "a", view="swapped"),
        rec("general", 2, 1, "b", view="swapped"),
        rec("general", 1, None, "c", view="swapped"),
    ]
    m = compute_metrics(VLRewardBench(), official + swapped, order="both")
    assert m["overall"] == 1.0  # official view only, as published
    assert m["order/swapped/overall"] == pytest.approx(1 / 2)  # c unparsed → excluded (VL-RewardBench)
    assert m["order/position_consistency"] == pytest.approx(1 / 3)
    assert m["order/both_orders_correct"] == pytest.approx(1 / 3)
    assert m["order/chosen_first/accuracy"] == pytest.approx(2 / 3)  # a, b right; c swapped unparsed
    assert m["order/chosen_second/accuracy"] == pytest.approx(2 / 3)  # a, c right; b swapped wrong


def test_voting_at_k():
    assert M.majority_vote([1, 2, 2]) == 2 and M.majority_vote([1, 2]) is None
    records = [
        rec("general", 1, M.majority_vote(v), str(i), votes=v)
        for i, v in enumerate([[1, 1, 2], [2, 1, 2], [None, 2, 2], [1, None, 2]])
    ]
    m = compute_metrics(VLRewardBench(), records, votes=3)
    # voted preds: 1 ✓, 2 ✗, 2 ✗, tie → unparsed (excluded) → 1/3; first votes: 1 ✓, 2 ✗, None, 1 ✓ → 2/3
    assert m["overall"] == pytest.approx(1 / 3) and m["single/overall"] == pytest.approx(2 / 3)
    assert m["votes/k"] == 3 and m["parse_failures"] == 1
