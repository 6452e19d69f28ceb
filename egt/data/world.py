"""The synthetic preference world: the offline laboratory of docs/design.md §7.1.

Each sample is a rendered scene (a few large coloured shapes on a plain
background), a question about it, and two short structured responses, one
right and one wrong. Three question kinds, one per benchmark category:

- ``count`` ("How many red circles are there?")           -> ``reasoning``
- ``exist`` ("Is there a blue square in the image?")      -> ``hallucination``
  (the worse response hallucinates an absent object or denies a present one)
- ``color`` ("What colour is the triangle?")              -> ``general``

Difficulty ``d ∈ [0, 1]`` raises the number of objects, shrinks them, lets them
overlap (``layout=free``) or moves them off their cell's centre (``layout=grid``),
and makes the wrong answer closer (count off by one, a similar colour, a near-miss
object).

Layouts: ``free`` places objects anywhere; ``grid`` (the default) puts at most one
object in each 28-pixel cell, the area of one merged Qwen2.5-VL image token
(14-pixel patches, 2×2 merge). On the demo model's randomly initialised vision
tower, a linear probe on the image tokens finds "is there a <colour> <shape>?" at
0.85 balanced accuracy on ``grid`` scenes and 0.67 on ``free`` ones (chance 0.5;
``python -m egt.eval.vision_probe``): a grid scene puts each object's shape at a
fixed place in one token's patches.

Label noise is *not* uniform: a pair's label is flipped
with ``p_flip = noise_floor + noise_slope * (0.5 * d + ambiguous)`` (clipped to
[0, 1]), and an ``ambiguous_rate`` of pairs is ambiguous (both responses equally
wrong, or the scene genuinely unclear: a tiny or mostly off-canvas object, two
objects of the asked shape); their "true" label is a seeded coin flip. Every
sample's ``meta`` records the truth (``true_label``, ``flipped``, ``ambiguous``,
``difficulty``, ``scene``, ``claims``), so we can check what entropy finds.

Determinism: sample ``i`` of split ``s`` draws from its own stream
``(seed, crc32(s), i)``, so splits are independent and changing ``n_rl`` leaves
``sft_pool`` untouched; images are PNG-encoded here, byte-identical per seed.
"""

from __future__ import annotations

import difflib
import io
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

import datasets
import numpy as np
from PIL import Image, ImageDraw

from egt.data.schema import FEATURES, randomize_order

__all__ = [
    "COLOUR_RGB",
    "KINDS",
    "LAYOUTS",
    "SPLITS",
    "SplitConfig",
    "WorldConfig",
    "as_world_config",
    "claim_text",
    "make_record",
    "make_world",
    "render_scene",
]

SOURCE = "egt-world"
KINDS = ("count", "exist", "color")
SHAPES = ("circle", "square", "triangle")
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 195, 20),
}
SIMILAR_COLOUR = {"red": "yellow", "yellow": "red", "green": "blue", "blue": "green"}
BACKGROUND = (245, 245, 240)
LAYOUTS = ("grid", "free")
GRID_CELL = 28  # pixels: one merged Qwen2.5-VL image token (patch 14, spatial merge 2)
SPLITS = {"sft_pool": "sft", "rl_pool": "rl", "bench": "bench"}


@dataclass
class SplitConfig:
    """Per-split difficulty and noise.

    Difficulty is ``d = difficulty_min + (difficulty_max - difficulty_min) * u**difficulty_power``
    with ``u ~ U(0, 1)``; a power below 1 skews toward harder samples.
    """

    difficulty_min: float = 0.0
    difficulty_max: float = 1.0
    difficulty_power: float = 1.0
    noise_floor: float = 0.0
    noise_slope: float = 0.0
    ambiguous_rate: float = 0.0

    def p_flip(self, difficulty: float, ambiguous: bool) -> float:
        """Label-flip probability of one pair."""
        p = self.noise_floor + self.noise_slope * (0.5 * difficulty + float(ambiguous))
        return float(min(1.0, max(0.0, p)))

    def expected_flip_rate(self, grid: int = 4096) -> float:
        """E[p_flip] over this split's difficulty and ambiguity distribution."""
        u = (np.arange(grid) + 0.5) / grid
        d = self.difficulty_min + (self.difficulty_max - self.difficulty_min) * u**self.difficulty_power
        base = self.noise_floor + self.noise_slope * 0.5 * d
        clear = np.clip(base, 0.0, 1.0).mean()
        amb = np.clip(base + self.noise_slope, 0.0, 1.0).mean()
        return float((1 - self.ambiguous_rate) * clear + self.ambiguous_rate * amb)


@dataclass
class WorldConfig:
    """The synthetic world (docs/design.md §7.1). Defaults: clean easy SFT pool, a harder and
    noisier RL pool (like R1-Reward's RL set), a clean benchmark."""

    seed: int = 0
    n_sft: int = 1000
    n_rl: int = 1000
    n_bench: int = 300
    image_size: int = 56
    max_objects: int = 3
    layout: str = "grid"
    shapes: List[str] = field(default_factory=lambda: list(SHAPES))
    colours: List[str] = field(default_factory=lambda: list(COLOUR_RGB))
    kind_weights: Dict[str, float] = field(default_factory=lambda: {"count": 1.0, "exist": 1.0, "color": 1.0})
    categories: Dict[str, str] = field(
        default_factory=lambda: {"count": "reasoning", "exist": "hallucination", "color": "general"}
    )
    sft_pool: SplitConfig = field(
        default_factory=lambda: SplitConfig(0.0, 0.6, 1.0, noise_floor=0.02, noise_slope=0.1, ambiguous_rate=0.05)
    )
    rl_pool: SplitConfig = field(
        default_factory=lambda: SplitConfig(0.1, 1.0, 0.6, noise_floor=0.05, noise_slope=0.5, ambiguous_rate=0.2)
    )
    bench: SplitConfig = field(default_factory=lambda: SplitConfig(0.0, 1.0, 1.0))

    def split(self, name: str) -> SplitConfig:
        return getattr(self, _check_name(name, SPLITS, "split"))

    def size(self, name: str) -> int:
        return {"sft_pool": self.n_sft, "rl_pool": self.n_rl, "bench": self.n_bench}[name]

    def validate(self) -> None:
        for k in self.kind_weights:
            _check_name(k, KINDS, "question kind")
        for s in self.shapes:
            _check_name(s, SHAPES, "shape")
        for c in self.colours:
            _check_name(c, COLOUR_RGB, "colour")
        if len(set(self.shapes)) < 2 or len(set(self.colours)) < 3:
            raise ValueError("the world needs at least 2 shapes and 3 colours")
        if self.max_objects < 1 or self.image_size < 16:
            raise ValueError("max_objects must be >= 1 and image_size >= 16")
        _check_name(self.layout, LAYOUTS, "layout")
        if self.layout == "grid":
            if self.image_size % GRID_CELL:
                raise ValueError(
                    f"layout=grid needs image_size a multiple of {GRID_CELL} "
                    f"(one cell per merged image token), got {self.image_size}"
                )
            cells = (self.image_size // GRID_CELL) ** 2
            if self.max_objects + 1 > cells:  # +1: an ambiguous scene adds a hard-to-see object
                raise ValueError(
                    f"layout=grid at image_size={self.image_size} has {cells} cells, room for "
                    f"max_objects <= {cells - 1}, got {self.max_objects}; raise image_size"
                )
        if sum(max(0.0, w) for w in self.kind_weights.values()) <= 0:
            raise ValueError("kind_weights must have a positive weight")
        missing = [k for k, w in self.kind_weights.items() if w > 0 and k not in self.categories]
        if missing:
            raise ValueError(f"categories has no entry for kinds {missing}")


def _check_name(name: str, known, what: str) -> str:
    if name not in known:
        hint = difflib.get_close_matches(str(name), list(known), n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown {what} {name!r}{did} (known: {sorted(known)})")
    return name


def as_world_config(cfg: WorldConfig | Mapping[str, Any] | None) -> WorldConfig:
    """A :class:`WorldConfig` from itself, a mapping or an OmegaConf node."""
    if cfg is None:
        return WorldConfig()
    if isinstance(cfg, WorldConfig):
        return cfg
    if not isinstance(cfg, Mapping):  # DictConfig is a MutableMapping, but be lenient
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = dict(cfg)
    names = {f.name for f in fields(WorldConfig)}
    unknown = [k for k in cfg if k not in names]
    if unknown:
        raise ValueError(f"unknown world settings {unknown} (known: {sorted(names)})")
    for split in SPLITS:
        if split in cfg and not isinstance(cfg[split], SplitConfig):
            cfg[split] = SplitConfig(**dict(cfg[split]))
    for key in ("shapes", "colours"):
        if key in cfg:
            cfg[key] = list(cfg[key])
    for key in ("kind_weights", "categories"):
        if key in cfg:
            cfg[key] = dict(cfg[key])
    return WorldConfig(**cfg)


# ---------------------------------------------------------------- responses
def _noun(shape: str, colour: Optional[str], n: int) -> str:
    word = f"{colour} {shape}" if colour else shape
    return word if n == 1 else word + "s"


def claim_text(claim: Mapping[str, Any]) -> str:
    """The response sentence that makes ``claim``."""
    kind, shape, colour, value = claim["kind"], claim["shape"], claim.get("colour"), claim["value"]
    if kind == "count":
        if value == 0:
            return f"There are no {_noun(shape, colour, 2)}."
        verb = "is" if value == 1 else "are"
        return f"There {verb} {value} {_noun(shape, colour, value)}."
    if kind == "exist":
        return f"Yes, there is a {colour} {shape}." if value else f"No, there is no {colour} {shape}."
    return f"The {shape} is {value}."


def _query(kind: str, shape: str, colour: Optional[str]) -> str:
    if kind == "count":
        return f"How many {_noun(shape, colour, 2)} are there?"
    if kind == "exist":
        return f"Is there a {colour} {shape} in the image?"
    return f"What colour is the {shape}?"


# ---------------------------------------------------------------- scenes
class _Builder:
    """Draws one sample's scene and claims from its own RNG stream."""

    def __init__(self, cfg: WorldConfig, rng: np.random.Generator, d: float) -> None:
        self.cfg, self.rng, self.d = cfg, rng, d
        self.objects: list[dict] = []
        self._cells: set[tuple[int, int]] = set()  # layout=grid: the occupied cells

    def pick(self, options):
        options = list(options)
        return options[int(self.rng.integers(len(options)))]

    def n_objects(self) -> int:
        p = min(0.95, 0.35 + 0.6 * self.d)
        return 1 + int(self.rng.binomial(self.cfg.max_objects - 1, p))

    def size(self) -> int:
        w = self.cfg.image_size
        return max(6, int(round(w * (0.34 - 0.16 * self.d) * self.rng.uniform(0.85, 1.15))))

    def add(self, shape: str, colour: str, unclear: str | None = None) -> None:
        """Place one object; ``unclear`` = "tiny" | "edge" makes it hard to see."""
        if self.cfg.layout == "grid":
            self._add_in_cell(shape, colour, unclear)
            return
        w, d = self.cfg.image_size, self.d
        s = max(3, int(round(w * 0.07))) if unclear == "tiny" else self.size()
        best, best_slack = None, -1e9
        for _ in range(100):
            if unclear == "edge":  # ~30% of the shape is on the canvas
                out = int(round(0.2 * s))
                side = int(self.rng.integers(4))
                along = int(self.rng.integers(s // 2, w - s // 2 + 1))
                x, y = [(-out, along), (w + out, along), (along, -out), (along, w + out)][side]
            else:  # fully inside the canvas
                lo, hi = (s + 1) // 2, w - 1 - (s + 1) // 2
                x, y = (int(v) for v in self.rng.integers(lo, hi + 1, size=2))
            slack = min(
                (
                    max(abs(x - o["x"]), abs(y - o["y"])) - ((1 - 0.6 * d) * (s + o["size"]) / 2 + 1)
                    for o in self.objects
                ),
                default=0.0,
            )
            if slack > best_slack:
                best, best_slack = (x, y), slack
            if slack >= 0:
                break
        self.objects.append({"kind": shape, "colour": colour, "x": best[0], "y": best[1], "size": s})

    def _add_in_cell(self, shape: str, colour: str, unclear: str | None) -> None:
        """``layout=grid``: one object per free cell. Difficulty shrinks it (0.85 -> 0.5 of
        the cell) and moves it off the cell's centre, never out of its cell; "tiny" is a
        quarter of the cell, "edge" sits on the canvas border with ~30% of it inside."""
        c, g, d = GRID_CELL, self.cfg.image_size // GRID_CELL, self.d
        free = [(i, j) for j in range(g) for i in range(g) if (i, j) not in self._cells]
        if unclear == "edge":
            free = [(i, j) for i, j in free if min(i, j) == 0 or max(i, j) == g - 1]
        i, j = free[int(self.rng.integers(len(free)))]
        self._cells.add((i, j))
        if unclear == "tiny":
            s = max(3, int(round(c * 0.25)))
        else:
            s = min(c - 2, max(6, int(round(c * (0.85 - 0.35 * d) * self.rng.uniform(0.9, 1.1)))))
        x, y = i * c + c // 2, j * c + c // 2
        if unclear == "edge":
            out = int(round(0.2 * s))
            sides = [(-out, y), (g * c + out, y), (x, -out), (x, g * c + out)]
            on_border = [i == 0, i == g - 1, j == 0, j == g - 1]
            x, y = self.pick([p for p, ok in zip(sides, on_border) if ok])
        else:
            jit = int(round((c - s) // 2 * d))
            x += int(self.rng.integers(-jit, jit + 1))
            y += int(self.rng.integers(-jit, jit + 1))
        self.objects.append({"kind": shape, "colour": colour, "x": x, "y": y, "size": s})

    def distractors(self, n: int, avoid) -> None:
        """``n`` objects whose (shape, colour) fails the predicate ``avoid``."""
        pairs = [(s, c) for s in self.cfg.shapes for c in self.cfg.colours if not avoid(s, c)]
        for _ in range(n):
            self.add(*self.pick(pairs))

    def shuffle(self) -> list[dict]:
        order = self.rng.permutation(len(self.objects))
        return [self.objects[int(k)] for k in order]


def _count(b: _Builder, ambiguity: str | None):
    shape = b.pick(b.cfg.shapes)
    colour = b.pick(b.cfg.colours) if b.rng.random() < 0.5 else None
    n = b.n_objects()
    k = int(b.rng.integers(1, n + 1))
    for _ in range(k):
        b.add(shape, colour or b.pick(b.cfg.colours))
    b.distractors(n - k, lambda s, c: s == shape and (colour is None or c == colour))
    if ambiguity == "unclear":  # one more target that is hard to see: k or k+1?
        b.add(shape, colour or b.pick(b.cfg.colours), unclear=b.pick(("tiny", "edge")))
        values = [k, k + 1]
    elif ambiguity == "both_wrong":
        values = [k - 1, k + 1]
    else:
        if b.rng.random() < b.d:
            wrong = b.pick([v for v in (k - 1, k + 1) if v >= 0])
        else:
            wrong = b.pick([v for v in (k - 2, k + 2, k + 3) if v >= 0])
        values = [k, wrong]
    return shape, colour, [{"kind": "count", "shape": shape, "colour": colour, "value": v} for v in values]


def _exist(b: _Builder, ambiguity: str | None):
    shape, colour = b.pick(b.cfg.shapes), b.pick(b.cfg.colours)
    n = b.n_objects()
    is_target = lambda s, c: s == shape and c == colour  # noqa: E731
    if ambiguity == "unclear":  # the asked object is present but tiny or mostly off-canvas
        b.distractors(n, is_target)
        b.add(shape, colour, unclear=b.pick(("tiny", "edge")))
        values = [True, False]
    else:
        present = bool(b.rng.random() < 0.5)
        if present:
            b.add(shape, colour)
            b.distractors(n - 1, is_target)
        elif b.rng.random() < b.d:  # near miss: same shape or same colour
            near = b.pick(
                [(shape, c) for c in b.cfg.colours if c != colour] + [(s, colour) for s in b.cfg.shapes if s != shape]
            )
            b.add(*near)
            b.distractors(n - 1, is_target)
        else:
            b.distractors(n, lambda s, c: s == shape or c == colour)
        values = [present, not present]
    return shape, colour, [{"kind": "exist", "shape": shape, "colour": colour, "value": v} for v in values]


def _color(b: _Builder, ambiguity: str | None):
    shape, colour = b.pick(b.cfg.shapes), b.pick(b.cfg.colours)
    n = b.n_objects()
    b.add(shape, colour)
    others = [c for c in b.cfg.colours if c != colour]
    if ambiguity == "unclear":  # two objects of the asked shape
        second = b.pick(others)
        b.add(shape, second)
        b.distractors(max(0, n - 2), lambda s, c: s == shape)
        values = [colour, second]
    else:
        b.distractors(n - 1, lambda s, c: s == shape)
        if ambiguity == "both_wrong":
            idx = b.rng.permutation(len(others))[:2]
            values = [others[int(i)] for i in idx]
        else:
            similar = SIMILAR_COLOUR.get(colour)
            far = [c for c in others if c != similar] or others
            close = b.rng.random() < b.d and similar in others
            values = [colour, similar if close else b.pick(far)]
    return shape, None, [{"kind": "color", "shape": shape, "colour": None, "value": v} for v in values]


_KIND_FNS = {"count": _count, "exist": _exist, "color": _color}
_AMBIGUITIES = {"count": ("both_wrong", "unclear"), "exist": ("unclear",), "color": ("both_wrong", "unclear")}


def _rng(seed: int, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**63, zlib.crc32(split.encode()), int(i)])


def make_record(cfg: WorldConfig, split: str, i: int) -> dict:
    """Sample ``i`` of ``split`` without its image: responses in generation order
    (correct first unless ambiguous), ``label`` after noise, ``meta`` as a dict."""
    sc = cfg.split(split) if split in SPLITS else cfg.sft_pool
    rng = _rng(cfg.seed, split, i)
    # Fixed draw order for the sample-level coins, so they do not depend on the scene.
    u_d, u_kind, u_amb, u_sub, u_coin, u_flip = rng.random(6)
    d = sc.difficulty_min + (sc.difficulty_max - sc.difficulty_min) * u_d**sc.difficulty_power
    kinds = [k for k in cfg.kind_weights if cfg.kind_weights[k] > 0]
    w = np.array([cfg.kind_weights[k] for k in kinds], dtype=float)
    kind = kinds[min(int(np.searchsorted(np.cumsum(w / w.sum()), u_kind, side="right")), len(kinds) - 1)]
    ambiguous = bool(u_amb < sc.ambiguous_rate)
    subs = _AMBIGUITIES[kind]
    ambiguity = subs[int(u_sub * len(subs))] if ambiguous else None
    builder = _Builder(cfg, rng, d)
    shape, colour, claims = _KIND_FNS[kind](builder, ambiguity)
    true_label = (1 if u_coin < 0.5 else 2) if ambiguous else 1
    p_flip = sc.p_flip(d, ambiguous)
    flipped = bool(u_flip < p_flip)
    meta = {
        "true_label": true_label,
        "flipped": flipped,
        "ambiguous": ambiguous,
        "ambiguity": ambiguity,
        "difficulty": round(float(d), 4),
        "p_flip": round(p_flip, 4),
        "kind": kind,
        "scene": builder.shuffle(),
        "claims": claims,
    }
    return {
        "id": f"world-{SPLITS.get(split, split)}-{i:06d}",
        "query": _query(kind, shape, colour),
        "response_1": claim_text(claims[0]),
        "response_2": claim_text(claims[1]),
        "label": 3 - true_label if flipped else true_label,
        "category": cfg.categories[kind],
        "source": SOURCE,
        "meta": meta,
    }


def render_scene(scene: list[dict], image_size: int) -> Image.Image:
    """Draw the scene's objects (in order) on a plain background."""
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene:
        x, y, h, fill = o["x"], o["y"], o["size"] / 2, COLOUR_RGB[o["colour"]]
        if o["kind"] == "circle":
            draw.ellipse([x - h, y - h, x + h, y + h], fill=fill)
        elif o["kind"] == "square":
            draw.rectangle([x - h, y - h, x + h, y + h], fill=fill)
        else:
            draw.polygon([(x, y - h), (x - h, y + h), (x + h, y + h)], fill=fill)
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _build_split(cfg: WorldConfig, split: str) -> tuple[datasets.Dataset, dict]:
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for i in range(cfg.size(split)):
        rec = make_record(cfg, split, i)
        image = render_scene(rec["meta"]["scene"], cfg.image_size)
        rec["images"] = [{"bytes": _png(image), "path": None}]
        rec["meta"] = json.dumps(rec["meta"], sort_keys=True)
        for name in FEATURES:
            cols[name].append(rec[name])
    ds = datasets.Dataset.from_dict(cols, features=FEATURES)
    return randomize_order(ds, seed=cfg.seed)


def make_world(cfg: WorldConfig | Mapping[str, Any] | None = None) -> datasets.DatasetDict:
    """Build ``sft_pool``, ``rl_pool`` and ``bench``; deterministic by ``cfg.seed``.

    Response order is randomised per sample (:func:`randomize_order`); each split's
    balance is stored in ``dd[split].info.description`` as JSON.
    """
    cfg = as_world_config(cfg)
    cfg.validate()
    out = {}
    for split in SPLITS:
        ds, balance = _build_split(cfg, split)
        ds.info.description = json.dumps({"order_balance": balance})
        out[split] = ds
    return datasets.DatasetDict(out)
