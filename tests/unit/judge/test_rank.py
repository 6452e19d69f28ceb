"""Best-of-N ranking with a fake judge of known preferences: the known best, the stated number of calls,
ties and position disagreements reported, and a killed run resumed without judging a prompt twice."""

from __future__ import annotations

import json

import pytest

from egt.judge.api import Verdict
from judge_fakes import Known
from egt.judge.rank import rank_file, rank_prompt, read_candidates
from egt.judge.tournament import Knockout, RoundRobin, match_from


Q = {"w": 0.1, "x": 0.5, "y": 0.9, "z": 0.3, "v": 0.2}


@pytest.mark.parametrize("scheme,calls", [(Knockout(), 8), (RoundRobin(), 20)])
def test_the_known_best_with_the_stated_calls(scheme, calls):
    judge = Known(Q)
    prompt = {"id": "p", "images": ["i.png"], "question": "q", "candidates": ["w", "x", "y", "z", "v"]}
    r = rank_prompt(judge, prompt, scheme)
    assert r["best"] == 2 and r["best_response"] == "y"
    assert r["calls"] == r["calls_stated"] == judge.calls == calls  # knockout 2(n-1), round robin n(n-1)
    assert r["ties"] == r["position_disagreements"] == 0
    if scheme.name == "round_robin":
        assert r["scores"] == [0.0, 3.0, 4.0, 2.0, 1.0] and r["tied_best"] == [2]
    else:  # rounds won: (w,x)→x, (y,z)→y, bye v; (x,y)→y, bye v; (y,v)→y
        assert r["scores"] == [0.0, 1.0, 3.0, 0.0, 0.0]


def test_position_bias_is_a_reported_tie():
    judge = Known(Q, biased={frozenset(("x", "y"))})
    r = rank_prompt(judge, {"id": "p", "images": ["i"], "question": "q", "candidates": ["x", "y", "w"]}, RoundRobin())
    assert r["position_disagreements"] == 1 and r["ties"] == 1
    assert r["scores"] == [1.5, 1.5, 0.0] and r["tied_best"] == [0, 1] and r["best"] == 0
    (m,) = [m for m in r["matches"] if {m["a"], m["b"]} == {0, 1}]
    assert m["winner"] is None and m["kind"] == "position_disagreement" and m["p_a"] == pytest.approx(0.5)


def test_match_from_unparsed_and_probabilities():
    off = Verdict(1, 0.8, (0.8, 0.2), "r", "o")
    sw = Verdict(None, None, None, None, "garbage")
    m = match_from(3, 5, Verdict(1, 0.8, (0.8, 0.2), "r", "o", sw, None, False))
    assert (m.winner, m.kind, m.p_a) == (None, "unparsed", 0.8)
    sw = Verdict(2, 0.6, (0.4, 0.6), "r", "o")  # a shown second and picked: p on a = p("2") = 0.6
    m = match_from(3, 5, Verdict(1, 0.8, (0.8, 0.2), "r", "o", sw, 1, True))
    assert (m.winner, m.kind, m.p_a) == (3, "agree", pytest.approx(0.7))
    assert off.swapped is None


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"id": "a", "images": ["i.png"], "question": "q", "candidates": ["w", "x", "y"]},
    {"id": "b", "image": "i.png", "query": "q", "responses": ["z", "y"]},
    {"id": "c", "images": ["i.png"], "question": "q", "candidates": ["v", "x", "w", "z"]},
]


def test_rank_file_resumes_after_a_kill(tmp_path):
    data = write(tmp_path / "cands.jsonl", ROWS)

    class Dying(Known):
        def compare_many(self, items, order="shown", on_bad_sample="error"):
            self.prompts += 1
            if self.prompts == 4:  # knockout rounds: prompt a 2, prompt b 1 → dies in prompt c's first
                raise KeyboardInterrupt
            return super().compare_many(items, order, on_bad_sample)

    with pytest.raises(KeyboardInterrupt):
        rank_file(Dying(Q), data, tmp_path / "ranked.jsonl", "knockout", {"model": "m"})
    assert not (tmp_path / "ranked.jsonl").exists()
    resumed = Known(Q)
    totals = rank_file(resumed, data, tmp_path / "ranked.jsonl", "knockout", {"model": "m"})
    assert resumed.calls == 6  # only prompt c: 2(4-1)
    out = [json.loads(line) for line in (tmp_path / "ranked.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["a", "b", "c"] and [r["best_response"] for r in out] == ["y", "y", "x"]
    assert totals["calls"] == 4 + 2 + 6 and totals["prompts"] == 3
    with pytest.raises(ValueError, match="other settings"):
        rank_file(Known(Q), data, tmp_path / "ranked.jsonl", "round_robin", {"model": "m"})


def test_bad_rows_name_file_row_and_field_or_are_counted(tmp_path):
    rows = ROWS[:1] + [{"id": "d", "images": ["i.png"], "question": "q", "candidates": ["only one"]}]
    data = write(tmp_path / "c.jsonl", rows)
    with pytest.raises(ValueError, match=r"c\.jsonl, row 2: field 'candidates': must be a list of at least two"):
        read_candidates(data)
    prompts, skipped = read_candidates(data, "skip")
    assert [p["id"] for p in prompts] == ["a"] and skipped[0]["row"] == 2
    assert prompts[0]["images"] == [str(tmp_path / "i.png")]  # relative to the file's folder
    totals = rank_file(Known(Q), data, tmp_path / "r.jsonl", "round_robin", on_bad_sample="skip")
    assert (totals["prompts"], totals["skipped"], totals["calls"]) == (1, 1, 6)


def test_a_knockout_tie_goes_to_the_candidate_with_more_probability_not_to_p_above_a_half():
    from egt.judge.tournament import Knockout, Match

    # p_a = 0.4 < ½, but b got only 0.3: mass off the digits must not hand the tie to b
    (best, scores, _) = Knockout().run(2, lambda pairs: [Match(0, 1, None, "position_disagreement", 0.4, 0.3)])
    assert best == 0 and scores == [1.0, 0.0]
    (best, _, _) = Knockout().run(2, lambda pairs: [Match(0, 1, None, "position_disagreement", 0.3, 0.4)])
    assert best == 1
