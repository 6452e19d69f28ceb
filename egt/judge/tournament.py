"""Best-of-N by pairwise judgements: the tournaments ``python -m egt.judge rank`` runs (``--scheme``).

A *match* between candidates a and b is judged in both orders (a shown first, then b shown first), two judge
calls: a wins when both orders pick a, b when both pick b; otherwise it is a tie, counted as a
*position disagreement* (both parsed, each order picks the response in the same position) or *unparsed* (an
order without a verdict). Scores are points: 1 for a win, ½ for a tie. egt's choices (R1-Reward and
UnifiedReward ship pairwise judges but no ranking scheme): both orders always, ties never broken by the
position a candidate was shown in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

__all__ = ["Match", "Tournament", "Knockout", "RoundRobin", "SCHEMES", "match_from"]


@dataclass(frozen=True)
class Match:
    """Candidates ``a`` and ``b`` (indices), the ``winner`` (None: a tie), ``kind`` (agree, position_disagreement,
    unparsed, skipped), ``p_a`` and ``p_b``: the mean over the orders with answer-token probabilities of the
    probability the judge put on a's and on b's digit (None when none has them; raw p("1") / p("2") of the full
    softmax, so p_a + p_b ≤ 1: compare them with each other, not with ½)."""

    a: int
    b: int
    winner: int | None
    kind: str
    p_a: float | None = None
    p_b: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def match_from(a: int, b: int, verdict: object) -> Match:
    """The match a-vs-b from a :class:`egt.judge.Verdict` of (a as response 1, b as response 2), ``order="both"``."""
    if getattr(verdict, "skipped", None):
        return Match(a, b, None, "skipped")
    first, back = verdict.verdict, verdict.swapped_verdict
    shown, swapped = verdict.p_answer, getattr(verdict.swapped, "p_answer", None)
    # p on a: p("1") where a is shown first, p("2") in the swapped view (a second); on b the other two
    views = [v for v in (shown, None if swapped is None else (swapped[1], swapped[0])) if v is not None]
    p_a = sum(v[0] for v in views) / len(views) if views else None
    p_b = sum(v[1] for v in views) / len(views) if views else None
    if first is None or back is None:
        return Match(a, b, None, "unparsed", p_a, p_b)
    if first != back:
        return Match(a, b, None, "position_disagreement", p_a, p_b)
    return Match(a, b, a if first == 1 else b, "agree", p_a, p_b)


# plays a list of (a, b) pairs, each in both orders (2 judge calls a pair), and returns their matches
Play = Callable[[Sequence[tuple[int, int]]], list[Match]]


class Tournament(ABC):
    """A ranking scheme over ``n`` candidates from pairwise matches. ``calls(n)``: the judge calls (generations)
    it makes; ``run(n, play)`` → (best index, every candidate's score, the matches)."""

    name = "tournament"

    @abstractmethod
    def calls(self, n: int) -> int: ...

    @abstractmethod
    def run(self, n: int, play: Play) -> tuple[int, list[float], list[Match]]: ...


class RoundRobin(Tournament):
    """Every pair once, in both orders: n(n−1) calls. Score = wins + ½ ties; the best is the highest score
    (ties among the best: the lowest index, all of them reported as ``tied_best``)."""

    name = "round_robin"

    def calls(self, n: int) -> int:
        return n * (n - 1)

    def run(self, n: int, play: Play) -> tuple[int, list[float], list[Match]]:
        matches = play([(a, b) for a in range(n) for b in range(a + 1, n)])
        scores = [0.0] * n
        for m in matches:
            for c in (m.a, m.b):
                scores[c] += 1.0 if m.winner == c else 0.5 if m.winner is None else 0.0
        return max(range(n), key=lambda c: (scores[c], -c)), scores, matches


class Knockout(Tournament):
    """Single elimination: each round pairs the survivors in order (1st–2nd, 3rd–4th, …; an odd last one has a
    bye), 2(n−1) calls in all. A tie advances the candidate the judge put more probability on (``p_b``
    against ``p_a``), else the earlier one; the tie is reported. Score = rounds won."""

    name = "knockout"

    def calls(self, n: int) -> int:
        return 2 * (n - 1)

    def run(self, n: int, play: Play) -> tuple[int, list[float], list[Match]]:
        alive, scores, matches = list(range(n)), [0.0] * n, []
        while len(alive) > 1:
            pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
            played = play(pairs)
            matches += played
            nxt = []
            for m in played:
                b_more = m.p_a is not None and m.p_b is not None and m.p_b > m.p_a
                w = m.winner if m.winner is not None else (m.b if b_more else m.a)
                scores[w] += 1.0
                nxt.append(w)
            if len(alive) % 2:
                nxt.append(alive[-1])
            alive = nxt
        return alive[0], scores, matches


SCHEMES: dict[str, type[Tournament]] = {c.name: c for c in (Knockout, RoundRobin)}
