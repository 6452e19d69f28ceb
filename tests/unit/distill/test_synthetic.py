"""The synthetic teacher: blind to labels, deterministic, errs more when harder."""

import json

import numpy as np
import pytest

from egt.data.prompt import format_ok, parse_answer
from egt.data.world import WorldConfig, make_record
from egt.distill.synthetic import SyntheticTeacher
from egt.distill.teacher import Teacher, strip_label


def _records(n, split="rl_pool", seed=0):
    cfg = WorldConfig(seed=seed)
    return [make_record(cfg, split, i) for i in range(n)]


def _hand_sample(scene, claims, difficulty=0.0, kind="count", ambiguous=False, ambiguity=None):
    return {
        "id": "hand-1",
        "query": "q",
        "response_1": "a",
        "response_2": "b",
        "meta": json.dumps(
            {
                "scene": scene,
                "claims": claims,
                "difficulty": difficulty,
                "kind": kind,
                "ambiguous": ambiguous,
                "ambiguity": ambiguity,
            }
        ),
    }


CIRCLE = {"kind": "circle", "colour": "red", "x": 10, "y": 10, "size": 12}


def test_is_a_teacher_with_public_config():
    t = SyntheticTeacher(verdict_sentence=True)
    assert isinstance(t, Teacher)
    cfg = t.public_config()
    assert cfg["name"] == "synthetic" and cfg["verdict_sentence"] is True and json.dumps(cfg)


def test_strip_label_removes_label_information():
    rec = _records(1)[0]
    rec_json = {**rec, "meta": json.dumps(rec["meta"])}
    for sample in (rec, rec_json):
        s = strip_label(sample)
        meta = s["meta"] if isinstance(s["meta"], dict) else json.loads(s["meta"])
        assert "label" not in s and "true_label" not in meta and "flipped" not in meta
        assert "scene" in meta and "claims" in meta
    assert "label" in rec and "true_label" in rec["meta"]  # the input is untouched


def test_refuses_samples_with_labels():
    rec = _records(1)[0]
    with pytest.raises(ValueError, match="must not see the label"):
        SyntheticTeacher().generate([rec], attempt=0)
    no_label = {k: v for k, v in rec.items() if k != "label"}  # meta still has true_label
    with pytest.raises(ValueError, match="must not see the label"):
        SyntheticTeacher().generate([no_label], attempt=0)


def test_hand_checked_output():
    scene = [CIRCLE, {**CIRCLE, "x": 40}]
    claims = [
        {"kind": "count", "shape": "circle", "colour": None, "value": 3},
        {"kind": "count", "shape": "circle", "colour": None, "value": 2},
    ]
    out = SyntheticTeacher(error_base=0.0, error_slope=0.0).generate([_hand_sample(scene, claims)], 0)[0]
    assert out == (
        "<think>The question asks how many circles there are. The image shows 2 circles. "
        "Response 1 says 3 circles, which is wrong. Response 2 says 2 circles, which is right."
        "</think><answer>2</answer>"
    )
    assert 25 <= len(out.split()) <= 45


def test_verdict_sentence_knob():
    samples = [strip_label(r) for r in _records(30)]
    plain = SyntheticTeacher(verdict_sentence=False).generate(samples, 0)
    verdict = SyntheticTeacher(verdict_sentence=True).generate(samples, 0)
    for p, v in zip(plain, verdict):
        n = parse_answer(v)
        assert "is better" not in p
        assert v.endswith(f"Response {n} is better.</think><answer>{n}</answer>")
        assert parse_answer(p) == n  # same decisions, only the style differs


def test_outputs_are_canonical_and_deterministic():
    samples = [strip_label(r) for r in _records(200)]
    t = SyntheticTeacher(seed=1)
    a, b = t.generate(samples, 0), t.generate(samples, 0)
    assert a == b and all(format_ok(o) and parse_answer(o) in (1, 2) for o in a)
    assert t.generate(samples[5:6], 0) == a[5:6]  # independent of batch composition
    c = SyntheticTeacher(seed=1, error_base=0.5, error_slope=0.0).generate(samples, 1)
    d = SyntheticTeacher(seed=1, error_base=0.5, error_slope=0.0).generate(samples, 2)
    assert c != d  # a retry can differ


def _true_agreement(teacher, recs):
    answers = [parse_answer(o) for o in teacher.generate([strip_label(r) for r in recs], 0)]
    return np.array([a == r["meta"]["true_label"] for a, r in zip(answers, recs)])


def test_error_rate_rises_with_difficulty():
    recs = [r for r in _records(2000) if not r["meta"]["ambiguous"]]
    d = np.array([r["meta"]["difficulty"] for r in recs])
    ok = _true_agreement(SyntheticTeacher(error_base=0.02, error_slope=0.4), recs)
    easy, hard = 1 - ok[d < 0.4].mean(), 1 - ok[d > 0.8].mean()
    assert easy < 0.15 and hard > 0.25 and hard > easy + 0.15
    perfect = _true_agreement(SyntheticTeacher(error_base=0.0, error_slope=0.0), recs)
    assert perfect.all()


def test_about_half_on_ambiguous():
    cfg = WorldConfig(seed=2)
    cfg.rl_pool.ambiguous_rate = 1.0
    recs = [make_record(cfg, "rl_pool", i) for i in range(600)]
    answers = [
        parse_answer(o)
        for o in SyntheticTeacher(error_base=0, error_slope=0).generate([strip_label(r) for r in recs], 0)
    ]
    assert 0.4 < np.mean([a == 1 for a in answers]) < 0.6
    assert 0.4 < np.mean([a == r["meta"]["true_label"] for a, r in zip(answers, recs)]) < 0.6


def test_judge_each_knob_leaves_the_decision_to_the_answer():
    samples = [strip_label(r) for r in _records(30)]
    judged = SyntheticTeacher(judge_each=True).generate(samples, 0)
    facts = SyntheticTeacher(judge_each=False).generate(samples, 0)
    for j, f in zip(judged, facts):
        assert "which is" not in f and "Both responses" not in f and format_ok(f)
        assert parse_answer(f) == parse_answer(j)  # same decisions, only the style differs
        assert "which is right" in j or "Both responses" in j


def test_compact_style_hand_checked():
    scene = [CIRCLE, {**CIRCLE, "x": 40}, {**CIRCLE, "kind": "square", "colour": "blue", "x": 25}]
    t = SyntheticTeacher(error_base=0.0, error_slope=0.0, style="compact")
    count = [{"kind": "count", "shape": "circle", "colour": "red", "value": v} for v in (3, 2)]
    exist = [{"kind": "exist", "shape": "square", "colour": "green", "value": v} for v in (True, False)]
    color = [{"kind": "color", "shape": "square", "colour": None, "value": v} for v in ("blue", "red")]
    outs = t.generate(
        [
            _hand_sample(scene, count),
            _hand_sample(scene, exist, kind="exist"),
            _hand_sample(scene, color, kind="color"),
        ],
        0,
    )
    assert outs == [
        "<think>Count red circles: 2. Response 1: 3, wrong. Response 2: 2, right.</think><answer>2</answer>",
        "<think>Find a green square: no. Response 1: yes, wrong. Response 2: no, right.</think><answer>2</answer>",
        "<think>Colour of the square: blue. Response 1: blue, right. Response 2: red, wrong.</think><answer>1</answer>",
    ]
    both = [{"kind": "count", "shape": "circle", "colour": None, "value": v} for v in (1, 3)]
    out = t.generate([_hand_sample(scene, both, ambiguous=True, ambiguity="both_wrong")], 0)[0]
    assert "Count circles: 2. Response 1: 1, wrong. Response 2: 3, wrong. Both wrong.</think>" in out
    facts = SyntheticTeacher(error_base=0.0, error_slope=0.0, style="compact", judge_each=False)
    assert facts.generate([_hand_sample(scene, count)], 0)[0].startswith(
        "<think>Count red circles: 2. Response 1: 3. Response 2: 2.</think>"
    )


def test_versus_style_hand_checked():
    scene = [CIRCLE, {**CIRCLE, "x": 40}, {**CIRCLE, "kind": "square", "colour": "blue", "x": 25}]
    t = SyntheticTeacher(error_base=0.0, error_slope=0.0, style="versus")
    exist = [{"kind": "exist", "shape": "square", "colour": "green", "value": v} for v in (True, False)]
    color = [{"kind": "color", "shape": "square", "colour": None, "value": v} for v in ("blue", "red")]
    assert t.generate([_hand_sample(scene, exist, kind="exist"), _hand_sample(scene, color, kind="color")], 0) == [
        "<think>Find a green square: no. Response 1: yes vs no, wrong. Response 2: no vs no, right.</think>"
        "<answer>2</answer>",
        "<think>Colour of the square: blue. Response 1: blue vs blue, right. Response 2: red vs blue, wrong."
        "</think><answer>1</answer>",
    ]


def test_styles_make_the_same_decisions_and_unknown_style_is_refused():
    samples = [strip_label(r) for r in _records(200)]
    prose = SyntheticTeacher(seed=3).generate(samples, 0)
    compact = SyntheticTeacher(seed=3, style="compact").generate(samples, 0)
    versus = SyntheticTeacher(seed=3, style="versus").generate(samples, 0)
    assert [parse_answer(p) for p in prose] == [parse_answer(c) for c in compact] == [parse_answer(v) for v in versus]
    assert all(format_ok(c) for c in compact + versus)
    assert np.mean([len(c) for c in compact]) < 0.6 * np.mean([len(p) for p in prose])
    assert SyntheticTeacher(style="compact").public_config()["style"] == "compact"
    with pytest.raises(ValueError, match="unknown synthetic teacher style 'terse'"):
        SyntheticTeacher(style="terse")


def test_rule_judge_reads_both_styles():
    from egt.rl.judges.rule import conclusion

    samples = [strip_label(r) for r in _records(60)]
    for style, describe in (("prose", False), ("compact", False), ("versus", False), ("compact", True)):
        for out in SyntheticTeacher(style=style, describe=describe).generate(samples, 0):
            reasoning = out[len("<think>") : out.index("</think>")]
            decided = conclusion(reasoning)
            assert decided in (None, parse_answer(out))  # None only for "Both … right/wrong"
            assert (decided is None) == ("Both" in reasoning)


def test_describe_lists_every_object_in_a_fixed_order():
    scene = [
        {**CIRCLE, "kind": "square", "colour": "blue", "x": 25},
        CIRCLE,
        {**CIRCLE, "colour": "green", "x": 40},
        {**CIRCLE, "x": 50},
    ]
    t = SyntheticTeacher(error_base=0.0, error_slope=0.0, style="compact", describe=True)
    color = [{"kind": "color", "shape": "square", "colour": None, "value": v} for v in ("blue", "red")]
    # shapes in the world's order (circle, square, triangle), then colours (red, green, blue, yellow)
    assert t.generate([_hand_sample(scene, color, kind="color")], 0) == [
        "<think>Scene: red circle, red circle, green circle, blue square. Colour of the square: blue. "
        "Response 1: blue, right. Response 2: red, wrong.</think><answer>1</answer>"
    ]
    prose = SyntheticTeacher(error_base=0.0, error_slope=0.0, describe=True)
    assert prose.generate([_hand_sample(scene, color, kind="color")], 0)[0].startswith(
        "<think>The image contains red circle, red circle, green circle, blue square. The question asks"
    )
    assert t.public_config()["describe"] is True
    assert "describe" not in SyntheticTeacher().public_config()  # earlier trajectories keep their keys


def test_described_scene_agrees_with_a_misperception():
    from egt.distill.synthetic import _seen_scene

    scene = [CIRCLE, {**CIRCLE, "x": 40}, {**CIRCLE, "kind": "square", "colour": "blue", "x": 25}]
    red_circles = {"shape": "circle", "colour": "red"}
    assert _seen_scene("count", red_circles, scene, 2, "red") == [
        ("circle", "red"),
        ("circle", "red"),
        ("square", "blue"),
    ]
    assert _seen_scene("count", red_circles, scene, 1, "red") == [("circle", "red"), ("square", "blue")]
    assert _seen_scene("count", {"shape": "square", "colour": None}, scene, 3, "red") == [
        ("circle", "red"),
        ("circle", "red"),
        ("square", "blue"),
        ("square", "blue"),
        ("square", "blue"),
    ]
    assert _seen_scene("count", {"shape": "triangle", "colour": None}, scene, 1, "yellow")[-1] == ("triangle", "yellow")
    assert _seen_scene("exist", {"shape": "square", "colour": "green"}, scene, True, "red")[-1] == ("square", "green")
    assert _seen_scene("exist", red_circles, scene, False, "red") == [("square", "blue")]
    square = {"shape": "square", "colour": None}
    assert _seen_scene("color", square, scene, "green", "red")[2] == ("square", "green")
    assert _seen_scene("color", square, scene, None, "red") == [("circle", "red"), ("circle", "red")]
    assert _seen_scene("color", {"shape": "triangle", "colour": None}, scene, "blue", "red")[-1] == ("triangle", "blue")


def test_described_scene_always_implies_the_stated_fact():
    """With error_base=1 the teacher misperceives every clear sample; its list must still
    say what its next sentence says (count / presence / colour of the asked shape)."""
    import re

    from egt.distill.synthetic import _truth

    recs = _records(300)
    samples = [strip_label(r) for r in recs]
    outs = SyntheticTeacher(error_base=1.0, style="compact", describe=True).generate(samples, 0)
    errs = 0
    for rec, out in zip(recs, outs):
        listed = re.match(r"<think>Scene: (.*?)\. ", out).group(1)
        objects = [] if listed == "empty" else [dict(zip(("colour", "kind"), w.split())) for w in listed.split(", ")]
        kind, claim = rec["meta"]["kind"], rec["meta"]["claims"][0]
        stated = re.search(r": (\w+)\. Response 1", out).group(1)
        if kind == "color":  # two circles (ambiguous): the stated colour is one of them
            seen = [o["colour"] for o in objects if o["kind"] == claim["shape"]]
            assert (stated in seen) if seen else stated == "none", out
        else:
            value = _truth(kind, claim, objects)
            assert (("yes" if value else "no") if kind == "exist" else str(value)) == stated, out
        errs += _truth(kind, claim, rec["meta"]["scene"]) != _truth(kind, claim, objects)
    assert errs > 100  # most samples really were misperceived
