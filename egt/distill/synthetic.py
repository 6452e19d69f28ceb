"""A synthetic teacher for the embedded world (docs/design.md §7.2).

It "looks" at the scene recorded in ``meta`` (as a real teacher looks at the
image), checks each response's structured claim against what it perceives and
writes short templated reasoning, e.g.::

    <think>The question asks how many circles there are. The image shows 2 circles.
    Response 1 says 3 circles, which is wrong. Response 2 says 2 circles, which is
    right.</think><answer>2</answer>

It misperceives the asked fact (count, colour, existence) with probability
``error_base + error_slope * difficulty``, siding with the wrong response, and on
ambiguous samples it is a coin flip, so the fidelity filter has real work. It
never reads the label: ``meta``'s ``true_label``/``flipped`` are not used (and
callers strip them, :func:`egt.distill.teacher.strip_label`). Outputs are
deterministic per ``(seed, sample id, attempt)``.

``verdict_sentence=True`` ends the reasoning with "Response N is better." before
the answer; docs/design.md §7.2 records that this makes the answer digit a copy (answer
entropy ≈ 0), so it is off by default and kept as a knob to measure both.

``style="compact"`` writes the same decision in a short fixed form that puts the
perceived value and each response's claim in the same words, next to each other,
so a small model compares adjacent tokens instead of paraphrases::

    <think>Count circles: 2. Response 1: 3, wrong. Response 2: 2, right.</think><answer>2</answer>

``style="versus"`` is compact with the perceived value repeated beside each claim, so
the right/wrong verdict compares two tokens two positions apart rather than six or more
(the demo model learned to copy and to perceive colour well before it learned that
long-range comparison; docs/demo-judge.md, "Position by position")::

    <think>Count circles: 2. Response 1: 3 vs 2, wrong. Response 2: 2 vs 2, right.</think><answer>2</answer>

``describe=True`` first lists every object the teacher sees, in a fixed order (shapes,
then colours, as the world lists them), as a captioning teacher describes the image
before it reasons; the asked fact is then read off that list::

    <think>Scene: red circle, red circle, blue square. Count circles: 2. Response 1: 3, wrong. …

The list is the teacher's perception, so when it misperceives the asked fact the list
agrees with the mistake (an extra or a missing object, a recoloured one). It turns one
perceived token per trajectory into one per object: a dense signal for the vision tower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from egt.data.prompt import format_target
from egt.data.schema import meta_dict, stable_hash
from egt.data.world import COLOUR_RGB, SHAPES
from egt.distill.teacher import LABEL_META_KEYS, Teacher

__all__ = ["SyntheticTeacher"]

_VERSION = 1
STYLES = ("prose", "compact", "versus")


def _noun(shape: str, colour: str | None, n: int) -> str:
    word = f"{colour} {shape}" if colour else shape
    return word if n == 1 else word + "s"


def _truth(kind: str, claim: Mapping[str, Any], scene: list[dict]) -> Any:
    shape, colour = claim["shape"], claim.get("colour")
    if kind == "count":
        return sum(o["kind"] == shape and (colour is None or o["colour"] == colour) for o in scene)
    if kind == "exist":
        return any(o["kind"] == shape and o["colour"] == colour for o in scene)
    colours = [o["colour"] for o in scene if o["kind"] == shape]
    return colours[0] if colours else None


def _fact(kind: str, claim: Mapping[str, Any], value: Any) -> str:
    """What the image shows, as the teacher perceives it."""
    shape, colour = claim["shape"], claim.get("colour")
    if kind == "count":
        return f"no {_noun(shape, colour, 2)}" if value == 0 else f"{value} {_noun(shape, colour, value)}"
    if kind == "exist":
        return f"a {colour} {shape}" if value else f"no {colour} {shape}"
    return f"a {value} {shape}" if value else f"no {shape}"


def _said(kind: str, claim: Mapping[str, Any]) -> str:
    value = claim["value"]
    if kind == "count":
        return _fact(kind, claim, value)
    if kind == "exist":
        return "yes" if value else "no"
    return str(value)


def _value(kind: str, value: Any) -> str:
    """A perceived or claimed value in the compact style's words (``2``, ``yes``, ``red``)."""
    if kind == "exist":
        return "yes" if value else "no"
    return "none" if value is None else str(value)


# How each style names the asked fact: compact's "Count circles: 2", prose's "The question
# asks how many circles there are." ({shapes}: the plural noun, colour included if asked).
_ASKED = {
    "compact": {"count": "Count {shapes}", "exist": "Find a {colour} {shape}", "color": "Colour of the {shape}"},
    "prose": {
        "count": "how many {shapes} there are",
        "exist": "whether there is a {colour} {shape}",
        "color": "what colour the {shape} is",
    },
}


# The scene list's fixed order: shapes, then colours, as egt.data.world lists them.
_RANK = {**{s: i for i, s in enumerate(SHAPES)}, **{c: i for i, c in enumerate(COLOUR_RGB)}}


def _seen_scene(
    kind: str, claim: Mapping[str, Any], scene: list[dict], seen: Any, spare_colour: str = next(iter(COLOUR_RGB))
) -> list[tuple[str, str]]:
    """The (shape, colour) objects the teacher reports: the scene, edited so the asked fact
    reads ``seen`` (``spare_colour`` colours an object the teacher imagines)."""
    objects = [(o["kind"], o["colour"]) for o in scene]
    shape, colour = claim["shape"], claim.get("colour")
    if _truth(kind, claim, scene) == seen:
        return objects
    match = lambda o: o[0] == shape and (colour is None or o[1] == colour)  # noqa: E731
    if kind == "count":
        have = [i for i, o in enumerate(objects) if match(o)]
        if seen < len(have):
            drop = set(have[seen:])
            return [o for i, o in enumerate(objects) if i not in drop]
        spare = colour or (objects[have[-1]][1] if have else spare_colour)
        return objects + [(shape, spare)] * (int(seen) - len(have))
    if kind == "exist":
        return objects + [(shape, colour)] if seen else [o for o in objects if not match(o)]
    if seen is None:  # colour: the asked shape is not seen at all
        return [o for o in objects if o[0] != shape]
    first = next((i for i, o in enumerate(objects) if o[0] == shape), None)
    if first is None:
        return objects + [(shape, seen)]
    return [(shape, seen) if i == first else o for i, o in enumerate(objects)]


def _asked(style: str, kind: str, claim: Mapping[str, Any]) -> str:
    shape, colour = claim["shape"], claim.get("colour")
    return _ASKED[style][kind].format(shape=shape, colour=colour, shapes=_noun(shape, colour, 2))


class SyntheticTeacher(Teacher):
    """Reasoning from the scene description, with difficulty-dependent errors."""

    max_concurrency = 1  # pure Python: threads would not help, and one thread keeps the journal order
    data_name = "world"  # it writes from the synthetic world's scene descriptions (meta.scene, meta.claims)

    def __init__(
        self,
        error_base: float = 0.03,
        error_slope: float = 0.25,
        verdict_sentence: bool = False,
        judge_each: bool = True,
        style: str = "prose",
        describe: bool = False,
        seed: int = 0,
        name: str = "synthetic",
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown synthetic teacher style {style!r}; choose from {list(STYLES)}")
        self.style = style
        self.describe = bool(describe)
        self.error_base = float(error_base)
        self.error_slope = float(error_slope)
        self.verdict_sentence = bool(verdict_sentence)
        self.judge_each = bool(judge_each)
        self.seed = int(seed)
        self.name = name

    def public_config(self) -> dict:
        return {
            "name": self.name,
            "version": _VERSION,
            "error_base": self.error_base,
            "error_slope": self.error_slope,
            "verdict_sentence": self.verdict_sentence,
            "judge_each": self.judge_each,
            "style": self.style,
            "seed": self.seed,
            **({"describe": True} if self.describe else {}),  # keeps earlier trajectories' keys
        }

    def error_rate(self, difficulty: float) -> float:
        return float(min(1.0, max(0.0, self.error_base + self.error_slope * difficulty)))

    def generate(self, samples: list[dict], attempt: int) -> list[str]:
        return [self._one(s, int(attempt)) for s in samples]

    def _perceive(self, meta: Mapping[str, Any], rng: np.random.Generator) -> Any:
        kind, claims = meta["kind"], meta["claims"]
        truth = _truth(kind, claims[0], meta["scene"])
        if meta.get("ambiguous") and meta.get("ambiguity") != "both_wrong":
            return claims[int(rng.integers(2))]["value"]  # unclear scene: either reading
        if rng.random() < self.error_rate(float(meta.get("difficulty", 0.0))):
            wrong = [c["value"] for c in claims if c["value"] != truth]
            if wrong:
                return wrong[0]
            return (not truth) if kind == "exist" else (truth + 1 if kind == "count" else truth)
        return truth

    def _one(self, sample: Mapping[str, Any], attempt: int) -> str:
        sid = sample.get("id")
        meta = meta_dict(sample.get("meta"))
        if not isinstance(meta, Mapping) or "scene" not in meta or "claims" not in meta:
            raise ValueError(f"sample {sid!r}: the synthetic teacher needs meta.scene and meta.claims")
        if "label" in sample or any(k in meta for k in LABEL_META_KEYS):
            raise ValueError(f"sample {sid!r}: a teacher must not see the label; use strip_label")
        rng = np.random.default_rng([self.seed % 2**63, stable_hash(str(sample["id"])), attempt])
        kind, claims = meta["kind"], meta["claims"]
        seen = self._perceive(meta, rng)
        right = [c["value"] == seen for c in claims]
        write = self._prose if self.style == "prose" else self._compact
        parts = write(kind, claims, seen, right)
        if self.describe:
            parts.insert(0, self._scene(kind, claims[0], meta["scene"], seen))
        if right[0] != right[1]:
            answer = 1 if right[0] else 2
        else:
            if self.judge_each:
                both = "right" if right[0] else "wrong"
                parts.append(f"Both responses are {both}." if self.style == "prose" else f"Both {both}.")
            answer = 1 + int(rng.integers(2))
        if self.verdict_sentence:
            parts.append(f"Response {answer} is better.")
        return format_target(" ".join(parts), answer)

    def _scene(self, kind: str, claim: Mapping[str, Any], scene: list[dict], seen: Any) -> str:
        objects = _seen_scene(kind, claim, scene, seen)
        words = [f"{c} {s}" for s, c in sorted(objects, key=lambda o: (_RANK[o[0]], _RANK[o[1]]))]
        if self.style == "prose":
            return "The image contains " + (", ".join(words) if words else "nothing") + "."
        return "Scene: " + (", ".join(words) if words else "empty") + "."

    def _prose(self, kind: str, claims: list, seen: Any, right: list[bool]) -> list[str]:
        parts = [
            f"The question asks {_asked('prose', kind, claims[0])}.",
            f"The image shows {_fact(kind, claims[0], seen)}.",
        ]
        for i, (claim, ok) in enumerate(zip(claims, right), start=1):
            # judge_each=False leaves the comparison to the answer token itself: its entropy
            # then carries the decision, as a "right"/"wrong" per response would otherwise do
            verdict = f", which is {'right' if ok else 'wrong'}" if self.judge_each else ""
            parts.append(f"Response {i} says {_said(kind, claim)}{verdict}.")
        return parts

    def _compact(self, kind: str, claims: list, seen: Any, right: list[bool]) -> list[str]:
        parts = [f"{_asked('compact', kind, claims[0])}: {_value(kind, seen)}."]
        for i, (claim, ok) in enumerate(zip(claims, right), start=1):
            verdict = f", {'right' if ok else 'wrong'}" if self.judge_each else ""
            versus = f" vs {_value(kind, seen)}" if self.style == "versus" else ""
            parts.append(f"Response {i}: {_value(kind, claim['value'])}{versus}{verdict}.")
        return parts
