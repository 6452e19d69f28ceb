"""Fidelity filter (paper §2.2): up to N attempts, first success kept, all-fail discarded."""

from collections import Counter

import pytest

from egt.distill.fidelity import FidelityState, fidelity_stats, run_fidelity_filter
from egt.distill.teacher import Teacher
from egt.utils.io import Journal


class ScriptedTeacher(Teacher):
    """Answers from a script: answers[id][attempt-1]; records what it was asked and saw."""

    name = "scripted"

    def __init__(self, answers):
        self.answers, self.calls, self.seen_labels = answers, [], []

    def generate(self, samples, attempt):
        out = []
        for s in samples:
            self.calls.append((s["id"], attempt))
            self.seen_labels.append("label" in s or "true_label" in s.get("meta", ""))
            a = self.answers[s["id"]][attempt - 1]
            out.append("no answer here" if a is None else f"<think>look</think><answer>{a}</answer>")
        return out


SAMPLES = [
    {"id": "a", "label": 1, "meta": '{"true_label": 1}'},
    {"id": "b", "label": 2, "meta": '{"true_label": 2}'},
    {"id": "c", "label": 1, "meta": '{"true_label": 1}'},
    {"id": "d", "label": 2, "meta": '{"true_label": 2}'},
]
SCRIPT = {"a": [1, 1, 1], "b": [1, 2, 2], "c": [2, None, 1], "d": [1, 1, 1]}


def test_first_success_kept_all_fail_discarded(tmp_path):
    t = ScriptedTeacher(SCRIPT)
    state = run_fidelity_filter(t, SAMPLES, Journal(tmp_path / "j.jsonl"), max_attempts=3, batch_size=2)
    assert {k: v["attempt"] for k, v in state.kept.items()} == {"a": 1, "b": 2, "c": 3}
    assert "d" not in state.kept
    # a kept sample is never asked again; d is asked exactly three times
    assert sorted(t.calls) == sorted(
        [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("b", 2), ("c", 2), ("d", 2), ("c", 3), ("d", 3)]
    )
    assert not any(t.seen_labels), "the teacher must never see the label"
    stats = fidelity_stats(state, SAMPLES, 3, 0.0)
    assert stats["kept"] == 3 and stats["discarded"] == 1
    assert stats["attempts_histogram"] == {"1": 1, "2": 1, "3": 1}
    assert stats["parse_failures"] == 1 and stats["teacher_calls"] == 9


def test_max_attempts_one(tmp_path):
    state = run_fidelity_filter(ScriptedTeacher(SCRIPT), SAMPLES, Journal(tmp_path / "j.jsonl"), max_attempts=1)
    assert set(state.kept) == {"a"}


def test_resume_asks_nothing_twice(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")

    class Dies(ScriptedTeacher):
        def generate(self, samples, attempt):
            if attempt == 2:
                raise KeyboardInterrupt  # killed after attempt 1 was journaled
            return super().generate(samples, attempt)

    with pytest.raises(KeyboardInterrupt):
        run_fidelity_filter(Dies(SCRIPT), SAMPLES, journal, max_attempts=3)
    t = ScriptedTeacher(SCRIPT)
    state = run_fidelity_filter(t, SAMPLES, journal, max_attempts=3)
    assert all(a > 1 for _, a in t.calls), t.calls
    assert set(state.kept) == {"a", "b", "c"}
    assert len(journal.read()) == 9  # every attempt recorded exactly once


def test_state_keeps_earliest_success():
    s = FidelityState.from_records(
        [
            {"id": "x", "attempt": 2, "ok": True, "parsed": 1, "output": "late"},
            {"id": "x", "attempt": 1, "ok": True, "parsed": 1, "output": "early"},
        ]
    )
    assert s.kept["x"]["output"] == "early"


def test_duplicate_ids_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        run_fidelity_filter(ScriptedTeacher(SCRIPT), SAMPLES + SAMPLES[:1], Journal(tmp_path / "j"), 3)


def test_bad_sample_in_a_batch_is_skipped_alone(tmp_path):
    from egt.data.schema import BadSampleError

    class Picky(ScriptedTeacher):
        def generate(self, samples, attempt):
            if any(s["id"] == "c" for s in samples):
                raise BadSampleError("c", "images", "cannot encode")
            return super().generate(samples, attempt)

    state = run_fidelity_filter(
        Picky(SCRIPT), SAMPLES, Journal(tmp_path / "j.jsonl"), 3, batch_size=4, on_bad_sample="skip"
    )
    assert state.skipped == {"c": "bad sample 'c': field 'images': cannot encode"}
    assert set(state.kept) == {"a", "b"}
    stats = fidelity_stats(state, SAMPLES, 3, 0.0)
    assert (stats["skipped_bad_samples"], stats["discarded"], stats["kept"]) == (1, 1, 2)
    with pytest.raises(BadSampleError, match="'c'"):
        run_fidelity_filter(Picky(SCRIPT), SAMPLES, Journal(tmp_path / "k.jsonl"), 3, batch_size=4)


def test_attempt_causes():
    from egt.distill.fidelity import judge_attempt
    from egt.distill.teacher import Reply

    s = {"id": "x", "label": 1}
    assert judge_attempt(s, "<think>r</think><answer>1</answer>", 1)["cause"] is None
    assert judge_attempt(s, "<think>r</think><answer>2</answer>", 1)["cause"] == "wrong_answer"
    assert judge_attempt(s, "<answer>1</answer>", 1)["cause"] == "no_reasoning"  # nothing to distil
    assert judge_attempt(s, "\\boxed{1}", 1)["cause"] == "parse"
    r = judge_attempt(s, Reply(cause="timeout", requests=6, retries=Counter(timeout=5)), 2)
    assert (r["ok"], r["cause"], r["requests"], r["retries"], r["output"]) == (False, "timeout", 6, {"timeout": 5}, "")
