"""Rejection sampling (UnifiedReward-Think's stage 2; docs/design.md §4.6): the judge's own correct
reasoning on the RL pool, as SFT trajectories.

Source: Wang et al. 2025, "Unified Multimodal Chain-of-Thought Reward Model through Reinforcement
Fine-Tuning", arXiv 2505.03318, §3; released code CodeGoat24/UnifiedReward@ff6f520, UnifiedReward-Think/
README "Stage 2. Rejection Sampling" ("Samples that are correctly predicted by the model should be retained
and used for rejection sampling") and ``1.rejection_sampling.sh`` (the same SFT recipe as the cold start).

From the probe table (one row per sample: ``id``, ``label``, ``answers`` [n] the parsed verdict of each
draw, ``texts`` [n] each draw's output, written with ``probe.keep_texts=true``) a draw *j* of sample *i*
is **correct** when ``answers[i][j] == label[i]`` (egt's verdict parse, the probe's and evaluation's) and
its text passes the format rule (``rft.format``, an :class:`egt.rl.rules.FormatRule`). Kept
(:data:`KEEP_RULES`, ``rft.keep``):

- ``first``: the first correct draw of each sample (one trajectory per sample, their data's shape);
- ``all``: every distinct correct text, in draw order, at most ``rft.per_sample`` per sample (null: no cap).

egt's choices where the source is silent: how many draws per sample (``probe.n``; their README does not
say), distinct texts only for ``all`` (a repeated text would weigh one trajectory twice), and the format
check (their stage-2 data are the judge's outputs in their answer format; egt requires the rule's shape).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset

from egt.rl.rules import FormatRule
from egt.sft.data import column

__all__ = ["KEEP_RULES", "keep_correct", "trajectory_set", "rejection_summary"]
KEEP_RULES = ("first", "all")
NEEDS = ("id", "label", "answers", "texts")


def _right(answer: Any, label: Any) -> bool:
    """Whether a parsed verdict equals the label; a missing one (None, or NaN as parquet reads a null
    inside a list of ints) is wrong."""
    return answer is not None and not (isinstance(answer, float) and np.isnan(answer)) and int(answer) == int(label)


def _flag(table: pd.DataFrame, name: str) -> np.ndarray | None:
    return table[name].fillna(False).to_numpy(dtype=bool) if name in table else None


def keep_correct(
    table: pd.DataFrame, format_rule: FormatRule, keep: str = "first", per_sample: int | None = None
) -> pd.DataFrame:
    """The kept trajectories: one row each, ``id``, ``draw`` (its index among the sample's draws),
    ``target`` (its text), in table order then draw order.

    Raises:
        KeyError: a column the rule reads is missing (``texts``: probe with ``probe.keep_texts=true``).
        ValueError: ``keep`` is not one of :data:`KEEP_RULES`, a row's ``answers`` and ``texts`` differ in length.
    """
    missing = [c for c in NEEDS if c not in table]
    if missing:
        hint = " (write probe.keep_texts=true: the probe then keeps every draw's text)" if "texts" in missing else ""
        raise KeyError(f"the probe table has no column {missing}{hint}")
    if keep not in KEEP_RULES:
        raise ValueError(f"rft.keep={keep!r}: write one of {list(KEEP_RULES)}")
    cap = 1 if keep == "first" else per_sample
    rows: list[dict[str, Any]] = []
    for sid, label, answers, texts in zip(table["id"], table["label"], table["answers"], table["texts"]):
        answers, texts = list(answers), list(texts)
        if len(answers) != len(texts):
            raise ValueError(f"probe row id={sid}: {len(answers)} answers but {len(texts)} texts")
        seen: set[str] = set()
        for j, (answer, text) in enumerate(zip(answers, texts)):
            if cap is not None and len(seen) >= cap:
                break
            if not _right(answer, label) or text in seen or not format_rule.ok(text):
                continue
            seen.add(text)
            rows.append({"id": str(sid), "draw": j, "target": text})
    return pd.DataFrame(rows, columns=["id", "draw", "target"])


def trajectory_set(pool: Dataset, kept: pd.DataFrame) -> Dataset:
    """``pool``'s rows of the kept trajectories (a sample once per trajectory), with the text as column
    ``target``: what :func:`egt.sft.data.join_trajectories` gives the SFT stage.

    Raises:
        ValueError: a kept id is not in ``pool`` (the probe table was made on other data).
    """
    where = {sid: i for i, sid in enumerate(column(pool, "id"))}
    missing = [i for i in kept["id"] if i not in where]
    if missing:
        raise ValueError(f"{len(missing)} kept trajectories name samples not in the pool, e.g. {missing[:3]}")
    idx = [where[i] for i in kept["id"]]
    digest = hashlib.sha256(pd.util.hash_pandas_object(kept, index=False).to_numpy().tobytes()).hexdigest()[:16]
    fp = hashlib.sha256(f"rft:{pool._fingerprint}:{digest}".encode()).hexdigest()[:16]
    rows = pool.select(idx, new_fingerprint=f"{fp}-select")
    return rows.add_column("target", list(kept["target"]), new_fingerprint=fp)


def rejection_summary(table: pd.DataFrame, kept: pd.DataFrame) -> dict[str, Any]:
    """Counts of the pool, its draws and what was kept; in the synthetic world how many kept trajectories
    (and samples) are on flipped / ambiguous labels, beside the pool's rates: rejection sampling against a
    noisy label keeps the judge's agreements with the wrong label."""
    n_draws = int(sum(len(a) for a in table["answers"]))
    right = sum(_right(a, y) for ans, y in zip(table["answers"], table["label"]) for a in ans)
    per_sample = kept.groupby("id").size() if len(kept) else pd.Series(dtype=int)
    out: dict[str, Any] = {
        "n_pool": int(len(table)),
        "draws": n_draws,
        "right_verdicts": int(right),
        "kept": int(len(kept)),
        "kept_samples": int(len(per_sample)),
        "kept_per_sample_max": int(per_sample.max()) if len(per_sample) else 0,
    }
    ids = table["id"].astype(str).to_numpy()
    for name in ("flipped", "ambiguous"):
        flag = _flag(table, name)
        if flag is None:
            continue
        noisy = set(ids[flag])
        on = kept["id"].isin(noisy).to_numpy() if len(kept) else np.zeros(0, dtype=bool)
        out[f"{name}_kept"] = int(on.sum())  # trajectories
        out[f"{name}_kept_samples"] = int(len(set(kept["id"][on]))) if len(kept) else 0
        out[f"{name}_in_kept"] = round(float(on.mean()), 4) if len(kept) else None
        out[f"{name}_rate"] = round(float(flag.mean()), 4)
    return out
