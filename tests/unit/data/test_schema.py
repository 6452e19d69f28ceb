"""Schema validation and seeded response-order randomisation."""

import io
import json

import datasets
import pytest
from PIL import Image

from egt.data.schema import FEATURES, BadSampleError, randomize_order, validate_dataset, validate_sample


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _row(i: int = 0, **over) -> dict:
    row = {
        "id": f"s-{i}",
        "images": [{"bytes": _png(), "path": None}],
        "query": "q?",
        "response_1": "a",
        "response_2": "b",
        "label": 1,
        "category": "general",
        "source": "test",
        "meta": json.dumps({"true_label": 1, "claims": ["A", "B"]}),
    }
    row.update(over)
    return row


def _ds(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=FEATURES)


def test_features_allow_several_images():
    ds = _ds([_row(images=[{"bytes": _png(), "path": None}] * 2)])
    assert len(ds[0]["images"]) == 2 and isinstance(ds[0]["images"][0], Image.Image)


def test_valid_sample_passes():
    validate_sample(_row())
    validate_sample(_row(images=[Image.new("RGB", (4, 4))], meta=None))


@pytest.mark.parametrize(
    "over, field",
    [
        ({"label": 3}, "label"),
        ({"label": 0}, "label"),
        ({"label": True}, "label"),
        ({"label": None}, "label"),
        ({"response_2": "   "}, "response_2"),
        ({"query": ""}, "query"),
        ({"images": []}, "images"),
        ({"images": [{"bytes": b"not an image", "path": None}]}, "images"),
        ({"meta": "{not json"}, "meta"),
        ({"meta": "[1, 2]"}, "meta"),
    ],
)
def test_bad_sample_names_id_and_field(over, field):
    with pytest.raises(BadSampleError) as err:
        validate_sample(_row(7, **over))
    assert err.value.field == field and err.value.sample_id == "s-7"
    assert "s-7" in str(err.value) and repr(field) in str(err.value)


def test_missing_field():
    row = _row(3)
    del row["response_1"]
    with pytest.raises(BadSampleError, match="s-3.*response_1.*missing"):
        validate_sample(row)


def test_validate_dataset_skip_and_error():
    rows = [_row(0), _row(1, label=3), _row(2), _row(3, images=[{"bytes": b"xx", "path": None}]), _row(4, label=0)]
    clean, stats = validate_dataset(_ds([r for r in rows]), on_bad_sample="skip")
    assert stats == {"checked": 5, "skipped": 3, "reasons": {"label": 2, "images": 1}}
    assert clean["id"] == ["s-0", "s-2"]
    assert isinstance(clean[0]["images"][0], Image.Image)  # the clean set still decodes images
    with pytest.raises(BadSampleError, match="s-1"):
        validate_dataset(_ds(rows), on_bad_sample="error")


def test_randomize_order_remaps_and_is_seeded():
    rows = [_row(i, response_1=f"good{i}", response_2=f"bad{i}", label=1) for i in range(200)]
    ds = _ds(rows)
    out, bal = randomize_order(ds, seed=5)
    again, bal2 = randomize_order(ds, seed=5)
    other, _ = randomize_order(ds, seed=6)
    assert out["response_1"] == again["response_1"] and bal == bal2
    assert out["response_1"] != other["response_1"]
    assert bal["label_1"] + bal["label_2"] == 200 and bal["swapped"] == bal["label_2"]
    assert 60 < bal["swapped"] < 140
    for row in out:
        i = int(row["id"].split("-")[1])
        meta = json.loads(row["meta"])
        good = row[f"response_{row['label']}"]
        assert good == f"good{i}"  # label follows the good response
        assert meta["true_label"] == row["label"]
        assert meta["claims"] == (["A", "B"] if row["label"] == 1 else ["B", "A"])
    assert out.features == FEATURES


def test_randomize_order_depends_on_id_not_position():
    rows = [_row(i) for i in range(50)]
    a, _ = randomize_order(_ds(rows), seed=1)
    b, _ = randomize_order(_ds(rows[::-1]), seed=1)
    assert dict(zip(a["id"], a["label"])) == dict(zip(b["id"], b["label"]))
