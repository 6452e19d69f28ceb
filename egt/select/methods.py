"""Selection methods (paper §2.3, Tables 2, 3 and 5): each ranks the probed samples, filters them, or both.

A method returns row indices of the probe table in preference order: all of them (a ranking), or only
the samples that pass its rule (a filter, e.g. a pass-rate band). :func:`egt.select.selection.select`
then takes a window of those candidates (size by k / fraction / percentile, band low / mid / high; no
size set keeps every candidate). Ties are broken by sample id, so the result never depends on the
table's row order. Add one: subclass :class:`Selection`, name it by ``_target_`` in
``conf/selection/<name>.yaml`` (docs/extending.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

__all__ = [
    "Selection",
    "EntropySelection",
    "RandomSelection",
    "AccuracySelection",
    "AllSelection",
    "PassRateBand",
    "IncorrectSelection",
    "rank_by",
]


def rank_by(key: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices sorted by ``key`` ascending, ties by id (+inf last).

    >>> rank_by(np.array([1.0, 0.5, 1.0]), np.array(["c", "b", "a"])).tolist()
    [1, 2, 0]
    """
    return np.lexsort((ids.astype(str), key))


class Selection(ABC):
    """The contract: ``rank(table, scores, seed)`` returns [M ≤ N] distinct row indices of ``table`` (the
    probe table: ``id``, ``answer_entropy``, ``sentence_entropy``, ``correct_score``, …) best first,
    given the entropy score of every row ``scores`` [N] (lower = more certain, +inf = no answer) and a
    seed; deterministic for a seed and independent of the table's row order (break ties by id)."""

    name = "selection"
    sized = True  # False: keeps every candidate whatever k / fraction / percentile say
    filters = False  # True: may return a subset; with no size set, every sample that passes is kept
    # probe.* values the columns this method reads need, e.g. {"answer_probs": True} (checked by
    # egt.config.validate with check_probe; the message names the keys to write)
    probe_settings: dict = {}

    @abstractmethod
    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:  # [M] indices
        """The candidates, best first."""

    def check_probe(self, n: int, temperature: float) -> str | None:
        """What to set when the probe's ``n`` outputs per sample at ``temperature`` cannot serve this method
        (checked by egt.config.validate before any stage); None when they can."""
        return None

    def stats(self) -> dict:
        """What the last ``rank`` found beyond the kept ids (e.g. how many samples a filter flagged), as JSON
        scalars for the select stage's summary; ``{}`` unless a method records some (in ``self._stats``)."""
        return dict(getattr(self, "_stats", {}))


class EntropySelection(Selection):
    """Lowest entropy score first (the paper's curation)."""

    name = "entropy"

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        return rank_by(scores, table["id"].to_numpy())


class AccuracySelection(Selection):
    """Lowest correctness score first (Table 3's "Accuracy": the samples the model gets wrong)."""

    name = "accuracy"

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        return rank_by(table["correct_score"].to_numpy(dtype=np.float64), table["id"].to_numpy())


class RandomSelection(Selection):
    """A seeded random order (Table 3's "Random"), independent of the table's row order."""

    name = "random"

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        by_id = np.argsort(table["id"].to_numpy().astype(str), kind="stable")
        return by_id[np.random.default_rng(seed).permutation(len(by_id))]


class AllSelection(Selection):
    """Everything ("Full RL", Table 2), in entropy order."""

    name = "all"
    sized = False

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        return EntropySelection().rank(table, scores, seed)


class PassRateBand(Selection):
    """The difficulty prior's offline filter (Chen et al. 2025, "Unlocking the Potential of Difficulty Prior
    in RL-based Multimodal Reasoning", arXiv 2505.13261, §3; no code released): keep the samples whose
    pass rate — the fraction of the probe's n sampled outputs whose answer equals the dataset label
    (``correct_score``, in [0, 1]) — lies in [``low``, ``high``], both inclusive; drop the almost-never-right
    (< low) and the always-right (> high), the two ends of the U-shaped pass-rate distribution. The defaults
    0.1 and 0.87 are the thresholds the paper's method section and its OpenReview discussion (forum
    0xewM6o97m) give. A filter: no size keeps every sample in the band; k / fraction / percentile then
    apply within it. Candidates are ordered by the entropy score (``entropy=difficulty``, 1 − pass rate,
    makes ``curriculum=ascending`` go from easy to hard); ties by id.

    egt's choices where the source is silent: the pass rate counts an output without an answer as wrong;
    it needs ``probe.n`` ≥ ``min_draws`` sampled outputs (8 by default; with n = 8 the band keeps pass rates
    1/8 … 6/8)."""

    name = "pass_rate"
    filters = True

    def __init__(self, low: float = 0.1, high: float = 0.87, min_draws: int = 8):
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"selection pass_rate: need 0 <= low <= high <= 1, got low={low}, high={high}")
        self.low, self.high, self.min_draws = low, high, min_draws

    def check_probe(self, n: int, temperature: float) -> str | None:
        if n < self.min_draws or temperature <= 0:
            return (
                f"selection=pass_rate needs at least {self.min_draws} sampled probe outputs per sample: "
                f"write probe.n={max(n, self.min_draws)} "
                f"probe.temperature={temperature if temperature > 0 else 1.0}"
            )
        return None

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        ranked = rank_by(scores, table["id"].to_numpy())
        rate = table["correct_score"].to_numpy(dtype=np.float64)[ranked]
        return ranked[(rate >= self.low) & (rate <= self.high)]


class IncorrectSelection(Selection):
    """UnifiedReward-Think's RL data (Wang et al. 2025, arXiv 2505.03318, §3; README "Stage 3. GRPO" of
    CodeGoat24/UnifiedReward@ff6f520, UnifiedReward-Think/: "Samples that are incorrectly predicted by the
    reward model should be used for GRPO training"): keep the samples whose pass rate — the fraction of the
    probe's n outputs whose parsed verdict equals the dataset label (``correct_score``, in [0, 1]) — is at
    most ``max_pass_rate`` (default 0: every draw wrong; an output without a verdict counts as wrong).
    A filter: no size keeps every such sample; candidates in entropy-score order, ties by id.

    It is the complement, per sample, of what the rft stage's rejection sampling keeps from the same probe
    table (:func:`egt.sft.rejection.keep_correct`: a draw with the right verdict and a valid format) when
    every right verdict is well-formed: a sample with a right but ill-formed draw is in neither (its pass
    rate is > 0, and rft keeps no ill-formed trajectory). egt's choices where the source is silent: the
    pass rate over ``probe.n`` draws (their inference pass draws one judgement per sample, n = 1 greedy
    here works too), and the threshold as a setting."""

    name = "incorrect"
    filters = True

    def __init__(self, max_pass_rate: float = 0.0):
        if not 0.0 <= max_pass_rate < 1.0:
            raise ValueError(
                f"selection incorrect: max_pass_rate={max_pass_rate} must be in [0, 1) (0: every draw wrong)"
            )
        self.max_pass_rate = max_pass_rate

    def rank(self, table: pd.DataFrame, scores: np.ndarray, seed: int) -> np.ndarray:
        ranked = rank_by(scores, table["id"].to_numpy())
        rate = table["correct_score"].to_numpy(dtype=np.float64)[ranked]
        return ranked[rate <= self.max_pass_rate + 1e-9]  # pass rates are k/n: the slack only absorbs rounding
