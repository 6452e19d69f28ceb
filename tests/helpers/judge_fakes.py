"""A stand-in judge of known preferences for the ranking and reward-adapter tests."""

from __future__ import annotations

from egt.judge.api import Verdict


class Known:
    """Prefers the response with the higher ``quality``; on pairs in ``biased`` it always picks the first shown
    (a position-biased judgement). Counts judge calls (views generated)."""

    def __init__(self, quality: dict[str, float], biased: set[frozenset] = frozenset(), die_after: int | None = None):
        self.quality, self.biased, self.calls, self.die_after, self.prompts = quality, biased, 0, die_after, 0

    def one(self, r1: str, r2: str) -> Verdict:
        self.calls += 1
        if frozenset((r1, r2)) in self.biased:
            d = 1
        else:
            d = 1 if self.quality[r1] > self.quality[r2] else 2
        p = (0.9, 0.1) if d == 1 else (0.1, 0.9)
        return Verdict(d, p[d - 1], p, "r", f"<answer>{d}</answer>")

    def compare_many(self, items, order="shown", on_bad_sample="error"):
        assert order == "both"
        out = []
        for it in items:
            a, b = self.one(it["response_1"], it["response_2"]), self.one(it["response_2"], it["response_1"])
            back = 3 - b.verdict
            out.append(Verdict(a.verdict, a.probability, a.p_answer, a.reasoning, a.output, b, back, back == a.verdict))
        return out
