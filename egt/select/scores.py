"""Per-sample entropy scores e_i = f(e_answer, e_sentence) (paper §2.3, Table 4).

Each variant is a class chosen by config (``entropy.score._target_``); a new
composite f is a new subclass: ``__call__(table) -> scores`` on the probe
table (one row per sample). Lower = more certain; +inf sorts last.
``probe_settings`` names the ``probe.*`` values a variant's columns need
(checked by :func:`egt.config.validate`); a table without them raises
:class:`MissingColumnError` saying how to get them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

__all__ = [
    "EntropyScore",
    "AnswerEntropy",
    "SentenceEntropy",
    "MixEntropy",
    "SentenceFallbackEntropy",
    "DebiasedAnswerEntropy",
    "Difficulty",
    "MissingColumnError",
]


class MissingColumnError(KeyError):
    """The probe table lacks a column this score reads."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class EntropyScore(ABC):
    name = "entropy"
    probe_settings: dict = {}  # probe.<key>: value the columns read here need

    @staticmethod
    def column(table: pd.DataFrame, name: str, fix: str) -> np.ndarray:  # [N]
        """``table[name]`` as float64, or :class:`MissingColumnError` ending with ``fix``."""
        if name not in table:
            raise MissingColumnError(f"the probe table has no {name!r} column: {fix}")
        return table[name].to_numpy(dtype=np.float64)

    @abstractmethod
    def __call__(self, table: pd.DataFrame) -> np.ndarray:  # [N]
        """Implemented by each variant."""


class AnswerEntropy(EntropyScore):
    """Eq. 3: the entropy at the answer token (+inf where no answer was generated)."""

    name = "answer"

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        return table["answer_entropy"].to_numpy(dtype=np.float64)


class SentenceEntropy(EntropyScore):
    """Eq. 4: mean token entropy over the generated output."""

    name = "sentence"

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        return table["sentence_entropy"].to_numpy(dtype=np.float64)


class MixEntropy(EntropyScore):
    """Table 4's Mix: e_answer × e_sentence (inf × anything positive stays inf)."""

    name = "mix"

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            mix = AnswerEntropy()(table) * SentenceEntropy()(table)
        return np.where(np.isnan(mix), np.inf, mix)  # inf × 0 (no output at all) sorts last


class SentenceFallbackEntropy(EntropyScore):
    """Beyond the paper: eq. 4 over the reasoning sentence only (the mean token entropy inside
    ``<think>…</think>``, column ``reasoning_entropy``), falling back to eq. 3 (the answer-token entropy,
    +inf without an answer) where the output has no reasoning tokens (NaN).

    >>> t = pd.DataFrame({"reasoning_entropy": [0.5, float("nan"), float("nan")],
    ...                   "answer_entropy": [0.1, 0.2, float("inf")]})
    >>> SentenceFallbackEntropy()(t).tolist()
    [0.5, 0.2, inf]
    """

    name = "sentence_fallback"

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        r = self.column(
            table,
            "reasoning_entropy",
            "this table was written before the probe wrote "
            "that column: re-run the probe stage (delete that probe artifact, <artifacts>/probe/<key>/, "
            "and the same key is recomputed)",
        )
        return np.where(np.isnan(r), AnswerEntropy()(table), r)


class DebiasedAnswerEntropy(EntropyScore):
    """Beyond the paper: position-debiased eq. 3, the mean of the answer-token entropies of the sample
    shown in its order and with the two responses swapped (columns ``answer_entropy`` and
    ``answer_entropy_swapped``, written by ``probe.both_orders=true``). A sample without an answer in
    either order scores +inf (the mean with inf): it sorts last, as an unanswered sample does under eq. 3.

    >>> t = pd.DataFrame({"answer_entropy": [0.1, 0.2, float("inf")],
    ...                   "answer_entropy_swapped": [0.3, float("inf"), 0.0]})
    >>> DebiasedAnswerEntropy()(t).tolist()
    [0.2, inf, inf]
    """

    name = "answer_debiased"
    probe_settings = {"both_orders": True}

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        swapped = self.column(
            table,
            "answer_entropy_swapped",
            "probe each sample in both response orders: "
            "write probe.both_orders=true (with entropy=answer_debiased) and re-run the probe",
        )
        return (AnswerEntropy()(table) + swapped) / 2


class Difficulty(EntropyScore):
    """1 − pass rate: the share of the probe's outputs that do not give the dataset label (``correct_score``
    is the pass rate), in [0, 1]; lower = easier. Not an entropy: the score the difficulty prior orders by
    (``selection=pass_rate``; Chen et al. 2025, arXiv 2505.13261), so ``curriculum=ascending`` goes from easy
    to hard. It reads the label, as ``selection=accuracy`` does."""

    name = "difficulty"

    def __call__(self, table: pd.DataFrame) -> np.ndarray:
        return 1.0 - table["correct_score"].to_numpy(dtype=np.float64)
