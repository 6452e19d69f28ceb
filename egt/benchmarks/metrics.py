"""Pure scoring functions for pairwise judge benchmarks.

A *record* is ``{"id", "group", "category", "label", "pred"}`` with ``label`` the
better response as shown (1 | 2) and ``pred`` the parsed judgement (1 | 2) or
``None`` for a parse failure. Accuracies are fractions in [0, 1].

Parse-failure policies (how each benchmark's authors count an unparsed output):

- ``exclude``: dropped from numerator and denominator (VL-RewardBench);
- ``coin_flip``: replaced by a coin flip drawn from ``random.Random(seed)`` in record
  order, one draw per failure only (Multimodal RewardBench, seed 123: its
  ``extract_judgment`` calls ``random.random() < 0.5`` → "A");
- ``wrong``: counted as a wrong answer.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any, Iterable, Optional, Sequence

POLICIES = ("exclude", "coin_flip", "wrong")


def uniform_indices(n: int, k: int) -> list[int]:
    """``min(k, n)`` indices spread evenly over ``range(n)``, first and last included.

    >>> uniform_indices(10, 4)
    [0, 3, 6, 9]
    >>> uniform_indices(3, 32)
    [0, 1, 2]
    """
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def resolve_failures(records: Sequence[dict[str, Any]], policy: str, seed: int = 123) -> list[Optional[int]]:
    """Predictions after the parse-failure policy (``None`` left only for ``exclude`` / ``wrong``)."""
    if policy not in POLICIES:
        raise ValueError(f"parse-failure policy {policy!r} is not one of {POLICIES}")
    if policy != "coin_flip":
        return [r["pred"] for r in records]
    rng = random.Random(seed)
    return [r["pred"] if r["pred"] is not None else (1 if rng.random() < 0.5 else 2) for r in records]


def _ratio(c: int, t: int) -> Optional[float]:
    return c / t if t else None


def accuracy_table(
    records: Sequence[dict[str, Any]], policy: str, categories: Iterable[str] = (), coin_seed: int = 123
) -> dict[str, Any]:
    """Per-category accuracy, overall (micro) and macro (mean over categories that have scored items).

    >>> recs = [{"category": "a", "label": 1, "pred": 1}, {"category": "a", "label": 1, "pred": None},
    ...         {"category": "b", "label": 2, "pred": 1}]
    >>> t = accuracy_table(recs, "exclude", ["a", "b"])
    >>> t["overall"], t["macro"], t["category/a"], t["n_scored"]
    (0.5, 0.5, 1.0, 2)
    >>> accuracy_table(recs, "wrong", ["a", "b"])["overall"]
    0.3333333333333333
    """
    preds = resolve_failures(records, policy, coin_seed)
    cats = list(categories) or sorted({r["category"] for r in records})
    correct: Counter = Counter()
    scored: Counter = Counter()
    total: Counter = Counter()
    for r, p in zip(records, preds):
        c = r["category"]
        total[c] += 1
        if p is None and policy == "exclude":
            continue
        scored[c] += 1
        correct[c] += int(p is not None and p == int(r["label"]))
    out: dict[str, Any] = {
        "n": len(records),
        "n_scored": sum(scored.values()),
        "overall": _ratio(sum(correct.values()), sum(scored.values())),
    }
    per = []
    for c in cats:
        acc = _ratio(correct[c], scored[c])
        out[f"category/{c}"], out[f"n/{c}"] = acc, total[c]
        if acc is not None:
            per.append(acc)
    out["macro"] = sum(per) / len(per) if per else None
    return out


def acc_plus(
    records: Sequence[dict[str, Any]], policy: str = "wrong", categories: Iterable[str] = (), coin_seed: int = 123
) -> dict[str, Any]:
    """Acc+ (MM-RLHF-RewardBench): the fraction of groups whose pairs are *all* judged correctly.

    >>> recs = [{"group": "g1", "category": "a", "label": 1, "pred": 1},
    ...         {"group": "g1", "category": "a", "label": 1, "pred": 2},
    ...         {"group": "g2", "category": "a", "label": 1, "pred": 1}]
    >>> acc_plus(recs)["acc_plus"]
    0.5
    """
    preds = resolve_failures(records, policy, coin_seed)
    ok: dict[str, bool] = {}
    cat_of: dict[str, str] = {}
    for r, p in zip(records, preds):
        if p is None and policy == "exclude":
            continue
        g = r["group"]
        ok[g] = ok.get(g, True) and p is not None and p == int(r["label"])
        cat_of[g] = r["category"]
    out: dict[str, Any] = {"acc_plus": _ratio(sum(ok.values()), len(ok)), "groups": len(ok)}
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for g, v in ok.items():
        by_cat[cat_of[g]].append(v)
    for c in list(categories) or sorted(by_cat):
        out[f"acc_plus/category/{c}"] = _ratio(sum(by_cat[c]), len(by_cat[c]))
        out[f"groups/{c}"] = len(by_cat[c])
    return out


def majority_vote(votes: Sequence[Optional[int]]) -> Optional[int]:
    """The most frequent parsed answer; ``None`` if nothing parsed or the vote is tied.

    >>> majority_vote([1, 2, 2]), majority_vote([1, None, None]), majority_vote([1, 2]), majority_vote([None])
    (2, 1, None, None)
    """
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return None
    (top, n), *rest = counts.most_common()
    return None if rest and rest[0][1] == n else top


def chosen_pick(label: int, pred: Optional[int]) -> Optional[bool]:
    """Whether the judge picked the better response (None when unparsed)."""
    return None if pred is None else pred == label


def position_consistency(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Over items judged in both orders: how often the same *response* is picked both times.

    ``pairs``: (record shown in the official order, record shown swapped). An item with an
    unparsed output in either order counts as inconsistent.

    >>> a = {"label": 1, "pred": 1}; b = {"label": 2, "pred": 2}   # same response both times
    >>> c = {"label": 1, "pred": 1}; d = {"label": 2, "pred": 1}   # always "Response 1"
    >>> position_consistency([(a, b), (c, d)])["position_consistency"]
    0.5
    """
    consistent = both_right = first_bias = 0
    for x, y in pairs:
        px, py = chosen_pick(x["label"], x["pred"]), chosen_pick(y["label"], y["pred"])
        consistent += int(px is not None and px == py)
        both_right += int(bool(px) and bool(py))
        first_bias += int(x["pred"] == 1 and y["pred"] == 1) + int(x["pred"] == 2 and y["pred"] == 2)
    n = len(pairs)
    return {
        "position_consistency": _ratio(consistent, n),
        "both_orders_correct": _ratio(both_right, n),
        "same_position_both_orders": _ratio(first_bias, n),
        "pairs": n,
    }


# Position-bias limits (eval.position_bias; documented in docs/evaluation.md). With every output parsed, an item
# judged the same way in both orders scores the same in both, so with position consistency c the official
# number can be off the debiased one by up to (1 - c) / 2: 10 points at c = 0.8. On a benchmark shown in
# one fixed order (MM-RLHF-RewardBench: chosen first) the official number is the better-first accuracy,
# which is off the debiased one by half the first-vs-second gap: 5 points at a gap of 0.1, more than
# most gains in the paper's Table 1.
MIN_CONSISTENCY = 0.8
MAX_ORDER_GAP = 0.1


def position_bias(
    metrics: dict[str, Any], min_consistency: float = MIN_CONSISTENCY, max_gap: float = MAX_ORDER_GAP
) -> list[str]:
    """Why a judge's numbers on a benchmark depend on the order the responses are shown in.

    ``metrics``: a benchmark's metrics with ``eval.order=both`` (``order/position_consistency``,
    ``order/chosen_first/accuracy``, ``order/chosen_second/accuracy``; fractions in [0, 1]).
    Returns one reason per limit crossed; empty when none is, or without order metrics. An unparsed verdict
    counts as inconsistent, so the consistency reason gives the official view's ``parse_failure_rate`` where
    it is above 0: a judge that does not answer is not one that follows the order.

    >>> position_bias({"order/position_consistency": 0.0, "order/chosen_first/accuracy": 1.0,
    ...                "order/chosen_second/accuracy": 0.0})
    ['position consistency 0.000 < 0.800',
     'accuracy with the better response first 1.000 vs second 0.000 (gap 1.000 > 0.100)']
    >>> position_bias({"order/position_consistency": 0.9, "order/chosen_first/accuracy": 0.8,
    ...                "order/chosen_second/accuracy": 0.75}), position_bias({"overall": 1.0})
    ([], [])
    >>> position_bias({"order/position_consistency": 0.0, "parse_failure_rate": 1.0})
    ['position consistency 0.000 < 0.800 (1.000 of the verdicts did not parse; each counts as inconsistent)']
    """
    out = []
    consistency = metrics.get("order/position_consistency")
    if consistency is not None and consistency < min_consistency - 1e-9:  # 0.8 - 1e-17 is not below 0.8
        unparsed = metrics.get("parse_failure_rate")
        why = f" ({unparsed:.3f} of the verdicts did not parse; each counts as inconsistent)" if unparsed else ""
        out.append(f"position consistency {consistency:.3f} < {min_consistency:.3f}{why}")
    first, second = metrics.get("order/chosen_first/accuracy"), metrics.get("order/chosen_second/accuracy")
    if first is not None and second is not None and abs(first - second) > max_gap + 1e-9:
        out.append(
            f"accuracy with the better response first {first:.3f} vs second {second:.3f} "
            f"(gap {abs(first - second):.3f} > {max_gap:.3f})"
        )
    return out
