"""The synthetic preference world (docs/design.md §7.1): determinism, noise, balance."""

import json
import math

import datasets
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from egt.data.schema import validate_dataset
from egt.data.world import SplitConfig, WorldConfig, as_world_config, make_world

SMALL = dict(seed=3, n_sft=120, n_rl=150, n_bench=90)


def _raw(ds: datasets.Dataset) -> list[dict]:
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return ds.to_list()


@pytest.fixture(scope="module", params=["grid", "free"])
def world(request) -> datasets.DatasetDict:
    return make_world(WorldConfig(**SMALL, layout=request.param))


@pytest.fixture(scope="module")
def big_rl() -> tuple[WorldConfig, list[dict]]:
    cfg = WorldConfig(seed=11, n_sft=0, n_rl=3000, n_bench=0)
    return cfg, [json.loads(m) for m in make_world(cfg)["rl_pool"]["meta"]]


def _layout(world) -> str:
    return "grid" if all(_in_cells(json.loads(m)) for m in world["bench"]["meta"]) else "free"


def test_same_seed_same_bytes(world):
    layout = _layout(world)
    again = make_world(WorldConfig(**SMALL, layout=layout))
    for split in ("sft_pool", "rl_pool", "bench"):
        assert _raw(world[split]) == _raw(again[split])
    other = make_world(WorldConfig(**{**SMALL, "seed": 4, "layout": layout}))
    assert _raw(world["rl_pool"]) != _raw(other["rl_pool"])


def test_splits_are_independent_streams(world):
    bigger = make_world(WorldConfig(**{**SMALL, "n_rl": 40, "n_bench": 10, "layout": _layout(world)}))
    assert _raw(bigger["sft_pool"]) == _raw(world["sft_pool"])
    assert _raw(bigger["rl_pool"]) == _raw(world["rl_pool"])[:40]  # sample i does not depend on n
    assert world["sft_pool"]["query"][:20] != world["rl_pool"]["query"][:20]


def test_schema_ids_images_and_validation(world):
    for split, short in (("sft_pool", "sft"), ("rl_pool", "rl"), ("bench", "bench")):
        ds = world[split]
        assert ds[0]["id"] == f"world-{short}-000000"
        assert len(set(ds["id"])) == len(ds)
        img = ds[0]["images"][0]
        assert isinstance(img, Image.Image) and img.size == (56, 56) and img.mode == "RGB"
        assert set(ds["source"]) == {"egt-world"}
        _, stats = validate_dataset(ds, on_bad_sample="error")
        assert stats["skipped"] == 0


def test_categories_and_kinds(world):
    for split in world:
        ds = world[split]
        assert set(ds["category"]) == {"general", "hallucination", "reasoning"}
        for cat, meta in zip(ds["category"], ds["meta"]):
            kind = json.loads(meta)["kind"]
            assert cat == {"count": "reasoning", "exist": "hallucination", "color": "general"}[kind]


def test_labels_balanced(world):
    for split in world:
        labels = np.asarray(world[split]["label"])
        n = len(labels)
        assert set(labels) == {1, 2}
        assert abs((labels == 1).sum() - n / 2) <= 3 * math.sqrt(n / 4)
        assert json.loads(world[split].info.description)["order_balance"]["label_1"] == (labels == 1).sum()


def _truth(meta):
    claim, scene = meta["claims"][0], meta["scene"]
    match = [o for o in scene if o["kind"] == claim["shape"]]
    if meta["kind"] == "count":
        return sum(claim["colour"] is None or o["colour"] == claim["colour"] for o in match)
    if meta["kind"] == "exist":
        return any(o["colour"] == claim["colour"] for o in match)
    assert len(match) == 1
    return match[0]["colour"]


def test_labels_agree_with_scene_unless_flipped(world):
    for split in world:
        for row in world[split].select_columns(["response_1", "response_2", "label", "meta"]):
            meta = json.loads(row["meta"])
            assert row["label"] == (3 - meta["true_label"] if meta["flipped"] else meta["true_label"])
            if meta["ambiguous"]:
                continue
            values = [c["value"] for c in meta["claims"]]
            truth = _truth(meta)
            assert values[meta["true_label"] - 1] == truth and values[2 - meta["true_label"]] != truth


def test_bench_is_clean(world):
    metas = [json.loads(m) for m in world["bench"]["meta"]]
    assert not any(m["flipped"] or m["ambiguous"] for m in metas)


def test_flip_rate_matches_config(big_rl):
    cfg, metas = big_rl
    expected = cfg.rl_pool.expected_flip_rate()
    # hand check of the closed form (no clipping occurs with the defaults):
    mean_d = 0.1 + 0.9 / (1 + 0.6)
    assert expected == pytest.approx(0.05 + 0.5 * (0.5 * mean_d + 0.2), abs=1e-3)
    realised = np.mean([m["flipped"] for m in metas])
    assert abs(realised - expected) < 4 * math.sqrt(expected * (1 - expected) / len(metas))
    amb = np.mean([m["ambiguous"] for m in metas])
    assert abs(amb - 0.2) < 4 * math.sqrt(0.16 / len(metas))


def test_noise_concentrates_on_hard_and_ambiguous(big_rl):
    _, metas = big_rl
    flipped = np.array([m["flipped"] for m in metas])
    amb = np.array([m["ambiguous"] for m in metas])
    d = np.array([m["difficulty"] for m in metas])
    assert flipped[amb].mean() > flipped[~amb].mean() + 0.2
    clear = ~amb
    assert flipped[clear & (d > 0.7)].mean() > flipped[clear & (d < 0.4)].mean()
    assert 0.1 <= d.min() and d.max() <= 1.0 and d.mean() > 0.55  # skewed to harder


def test_sft_pool_is_easier_than_rl(world):
    d = {s: np.mean([json.loads(m)["difficulty"] for m in world[s]["meta"]]) for s in ("sft_pool", "rl_pool")}
    assert d["sft_pool"] < d["rl_pool"]
    assert WorldConfig().sft_pool.expected_flip_rate() < WorldConfig().rl_pool.expected_flip_rate()


def test_uniform_noise_knob():
    sc = SplitConfig(noise_floor=0.2, noise_slope=0.0, ambiguous_rate=0.0)
    assert sc.expected_flip_rate() == pytest.approx(0.2)
    assert sc.p_flip(0.0, False) == sc.p_flip(1.0, True) == pytest.approx(0.2)
    assert SplitConfig(noise_floor=0.5, noise_slope=1.0, ambiguous_rate=1.0).p_flip(1.0, True) == 1.0


def test_config_from_mapping_and_errors():
    node = OmegaConf.create({"seed": 1, "n_rl": 5, "rl_pool": {"noise_floor": 0.3}, "shapes": ["circle", "square"]})
    cfg = as_world_config(node)
    assert cfg.rl_pool.noise_floor == 0.3 and cfg.n_rl == 5 and cfg.shapes == ["circle", "square"]
    with pytest.raises(ValueError, match="unknown world settings"):
        as_world_config({"n_rll": 3})
    with pytest.raises(ValueError, match="did you mean 'yellow'"):
        make_world(WorldConfig(colours=["red", "blue", "yelow"]))


def test_single_kind_world():
    dd = make_world(WorldConfig(n_sft=30, n_rl=0, n_bench=0, kind_weights={"count": 1.0}))
    assert set(dd["sft_pool"]["category"]) == {"reasoning"}


def _in_cells(meta, cell=28) -> bool:
    """Every clearly visible object lies wholly inside one cell, one object per cell."""
    cells = set()
    for o in meta["scene"]:
        h = o["size"] / 2
        i, j = int(o["x"] // cell), int(o["y"] // cell)
        if not (
            i * cell <= o["x"] - h
            and o["x"] + h <= (i + 1) * cell
            and j * cell <= o["y"] - h
            and o["y"] + h <= (j + 1) * cell
        ):
            return False
        if (i, j) in cells:
            return False
        cells.add((i, j))
    return True


def test_grid_layout_one_object_per_cell():
    cfg = WorldConfig(seed=5, n_sft=0, n_rl=400, n_bench=200, image_size=84, max_objects=5, layout="grid")
    dd = make_world(cfg)
    assert dd["bench"][0]["images"][0].size == (84, 84)
    metas = [json.loads(m) for s in ("rl_pool", "bench") for m in dd[s]["meta"]]
    edge = [m for m in metas if any(not 0 <= o["x"] < 84 or not 0 <= o["y"] < 84 for o in m["scene"])]
    clear = [m for m in metas if m not in edge]
    assert all(_in_cells(m) for m in clear)
    assert edge and all(m["ambiguous"] for m in edge)  # only the "edge" ambiguity leaves the canvas
    assert max(len(m["scene"]) for m in metas) == 6  # max_objects + an unclear one, in 9 cells
    # difficulty moves objects off their cell's centre and shrinks them
    d = np.array([m["difficulty"] for m in clear])
    off = np.array([np.mean([abs(o["x"] % 28 - 14) + abs(o["y"] % 28 - 14) for o in m["scene"]]) for m in clear])
    size = np.array([np.mean([o["size"] for o in m["scene"]]) for m in clear])
    assert off[d < 0.2].mean() < off[d > 0.8].mean() and size[d < 0.2].mean() > size[d > 0.8].mean() + 5


def test_grid_layout_errors():
    with pytest.raises(ValueError, match="multiple of 28"):
        make_world(WorldConfig(image_size=60))
    with pytest.raises(ValueError, match="max_objects <= 3"):
        make_world(WorldConfig(max_objects=4, layout="grid"))
    with pytest.raises(ValueError, match="did you mean 'grid'"):
        make_world(WorldConfig(layout="grd"))
    make_world(WorldConfig(image_size=60, max_objects=4, layout="free", n_sft=3, n_rl=3, n_bench=3))  # any size
