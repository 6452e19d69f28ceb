"""The Arrow encoding cache gives what encoding at every step gives: the same rows, batches and losses."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from egt.artifacts import ArtifactStore
from egt.data.encode import ChatEncoder, collate
from egt.data.sampler import ResumableSampler
from egt.data.schema import BadSampleError
from egt.models.loader import load_model_and_processor
from egt.sft import cache as encoding_cache
from egt.sft.data import SFTDataset, from_cache
from egt.sft.module import SFTModule

MAX_LENGTH = 400


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, proc = load_model_and_processor(tiny_model_dir)
    return model.train(), proc


def joined_rows(world_small, bad: int | None = 5, text: str = "the square is red"):
    """world_small's sft_pool with trajectories of different lengths; row ``bad``'s is over max_length."""
    pool = world_small["sft_pool"]
    targets = [
        f"<think>{text} " + "and blue " * (i % 4) + f"</think><answer>{1 + i % 2}</answer>" for i in range(len(pool))
    ]
    if bad is not None:
        targets[bad] = "word " * MAX_LENGTH
    return pool.add_column("target", targets)


def build(store, proc, joined, on_bad_sample="skip", template="minimal", tensors=True):
    enc = ChatEncoder(proc, template=template, max_length=MAX_LENGTH)
    return enc, encoding_cache.open_or_build(
        store,
        enc,
        joined,
        {"template": template, "max_length": MAX_LENGTH},
        {"data": "world-small"},
        on_bad_sample,
        tensors=tensors,
    )


def test_cached_batches_and_losses_equal_encoding_at_every_step(tiny, world_small, tmp_path, monkeypatch):
    monkeypatch.setattr(encoding_cache, "ROWS_PER_PART", 6)  # three parts, one of them short
    monkeypatch.setattr(encoding_cache, "BATCH_ROWS", 4)  # several record batches per part
    model, proc = tiny
    joined = joined_rows(world_small)
    rows = [0, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 15]  # a training split: not every row, the bad one among them
    enc, cache = build(ArtifactStore(tmp_path), proc, joined)
    _, check_only = build(ArtifactStore(tmp_path), proc, joined, tensors=False)  # sft.cache_tensors=false
    assert cache.summary()["parts"] == 3 and cache.summary()["bad"] == 1 and cache.has_tensors
    assert check_only.path != cache.path and not check_only.has_tensors
    assert check_only.summary()["megabytes"] < cache.summary()["megabytes"] / 10
    old = SFTDataset(joined.select(rows), enc)
    old_checked = old.check("skip")
    new, new_checked = from_cache(cache, rows, "skip")
    checked_only, _ = from_cache(check_only, rows, "skip", joined, enc)
    assert new_checked == old_checked == {"checked": 12, "skipped": 1}
    assert new.target_tokens == old.target_tokens == checked_only.target_tokens and len(set(old.target_tokens)) > 1
    modules, batches = [], []
    for ds in (old, new, checked_only):
        sampler = ResumableSampler(len(ds), seed=3)
        batches.append(
            list(
                DataLoader(
                    ds,
                    batch_size=4,
                    sampler=sampler,
                    collate_fn=lambda b: collate(b, proc.tokenizer.pad_token_id, "right"),
                )
            )
        )
        modules.append(SFTModule(model, 1e-3, 0.0, 0.0, 3, sampler, target_tokens=ds.target_tokens, local_batch=4))
    assert [len(b) for b in batches] == [3, 3, 3]
    for a, *others in zip(*batches):
        for b in others:
            assert list(a) == list(b)
            for k in a:
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    with torch.no_grad():
        losses = [
            [float(m.training_step(b, i)["loss"]) for i, b in enumerate(bs[:2])] for m, bs in zip(modules, batches)
        ]
    assert losses[0] == losses[1] == losses[2]


def test_bad_samples_raise_as_without_the_cache(tiny, world_small, tmp_path):
    _, proc = tiny
    joined = joined_rows(world_small)
    enc, cache = build(ArtifactStore(tmp_path / "skip"), proc, joined)  # several ranks build in skip mode
    with pytest.raises(BadSampleError) as old:
        SFTDataset(joined, enc).check("error")
    with pytest.raises(BadSampleError) as new:
        from_cache(cache, list(range(len(joined))), "error")
    with pytest.raises(BadSampleError) as one_process:  # one process stops at the first bad sample
        build(ArtifactStore(tmp_path / "error"), proc, joined, on_bad_sample="error")
    assert str(old.value) == str(new.value) == str(one_process.value) and new.value.kind == old.value.kind


def test_a_killed_build_resumes_and_a_finished_cache_is_reused(tiny, world_small, tmp_path, monkeypatch):
    monkeypatch.setattr(encoding_cache, "ROWS_PER_PART", 4)
    _, proc = tiny
    joined = joined_rows(world_small, bad=None)
    store = ArtifactStore(tmp_path)
    _, clean = build(ArtifactStore(tmp_path / "clean"), proc, joined)
    # a killed build: parts 0 and 2 written, a torn part 1 left in its temporary, no _SUCCESS.json
    _, cache = build(store, proc, joined)
    path = cache.path
    (path / "_SUCCESS.json").unlink()
    (path / encoding_cache.part_name(1)).rename(path / f".{encoding_cache.part_name(1)}.tmp-999999")
    (path / encoding_cache.part_name(3)).unlink()
    with pytest.raises(RuntimeError, match="parts missing"):
        encoding_cache.EncodingCache(path)
    encoded = []
    real = ChatEncoder.encode_example
    monkeypatch.setattr(ChatEncoder, "encode_example", lambda self, s, t: encoded.append(s["id"]) or real(self, s, t))
    _, resumed = build(store, proc, joined)
    assert resumed.path == path and len(encoded) == 1 + 8  # the schema's first row, then parts 1 and 3 only
    assert not list(path.glob(".*tmp*"))
    for i in range(len(joined)):
        a, b = clean[i], resumed[i]
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    encoded.clear()
    assert build(store, proc, joined)[1].path == path and encoded == []  # same key: reused, nothing encoded
    # what the encodings depend on changes the key: the trajectories' text, the prompt template
    assert build(store, proc, joined_rows(world_small, bad=None, text="a red square"))[1].path != path
    assert build(store, proc, joined, template="short")[1].path != path
