"""The openai teacher against a real loopback server injecting faults: causes, retries, 3-attempt rule."""

import json
import logging
import socket
import uuid
from collections import Counter

import pytest

from egt.data.schema import BadSampleError
from egt.distill.fidelity import fidelity_stats, run_fidelity_filter
from egt.distill.openai_teacher import OpenAITeacher, image_data_url
from egt.distill.teacher import RequestBudget, RequestCapReached
from egt.utils.io import Journal
from openai_fake import FakeOpenAI

KEY_ENV = "EGT_TEST_TEACHER_KEY"


@pytest.fixture
def secret(monkeypatch):
    key = "sk-" + uuid.uuid4().hex
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture(scope="module")
def samples(world_small):
    return list(world_small["sft_pool"])[:12]


def teacher(url, **kw):
    kw = {
        "timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.001,
        "max_backoff": 0.01,
        "seed": 0,
        "api_key_env": KEY_ENV,
        **kw,
    }
    return OpenAITeacher(url, "fake-model", **kw)


# per sample index: attempt -> fault on every request, or (attempt, n) -> fault on the n-th request only
FAULTS = {
    0: {(1, 1): "429"},
    1: {(1, 1): "500", (1, 2): "500"},
    2: {1: "500", 2: None},  # retries exhausted on attempt 1: a failed attempt, kept at 2
    3: {(1, 1): "slow"},
    4: {1: "bad_json", 2: "html"},
    5: {1: "wrong_format", 2: "disagree", 3: "empty_choices"},
    6: {1: "truncated", 2: "truncated", 3: "truncated"},
    7: {1: "400"},
}


def make_plan(samples):
    index = {s["id"]: i for i, s in enumerate(samples)}

    def plan(sid, attempt, n):
        f = FAULTS.get(index[sid], {})
        return f.get((attempt, n), f.get(attempt))

    return plan


def test_faults_counted_by_cause_and_three_attempt_rule(samples, secret, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="egt")
    with FakeOpenAI(samples, make_plan(samples), answer="label", slow_s=1.5) as fake:
        t = teacher(fake.url, timeout=1.0)  # margin for a loaded CI box: only the slow answer times out
        t.check()
        journal = Journal(tmp_path / "journal.jsonl")
        state = run_fidelity_filter(t, samples, journal, max_attempts=3, concurrency=4, budget=RequestBudget(1000))
    ids = [s["id"] for s in samples]
    kept = {ids.index(k): v["attempt"] for k, v in state.kept.items()}
    assert kept == {0: 1, 1: 1, 2: 2, 3: 1, 4: 3, 7: 2, 8: 1, 9: 1, 10: 1, 11: 1}  # 5 and 6 discarded
    stats = fidelity_stats(state, samples, 3, 0.0)
    assert stats["retries_by_cause"] == {"http_429": 1, "http_5xx": 2 + 2, "timeout": 1}
    assert stats["failures_by_cause"] == {
        "bad_json": 1,
        "content_type": 1,
        "empty_choices": 1,
        "http_4xx": 1,
        "http_5xx": 1,
        "parse": 1,
        "truncated": 3,
        "wrong_answer": 1,
    }
    assert stats["attempts_histogram"] == {"1": 7, "2": 2, "3": 1} and stats["discarded"] == 2
    assert stats["parse_failures"] == 1
    # every request the server saw was counted once; kept samples never asked again
    assert stats["requests"] == len(fake.calls)
    asked = Counter((sid, a) for sid, a, _ in fake.calls)
    assert asked[(ids[0], 1)] == 2 and asked[(ids[2], 1)] == 3 and asked[(ids[7], 1)] == 1  # 400: not retried
    assert {a for sid, a in asked if sid == ids[0]} == {1}
    assert {a for sid, a in asked if sid == ids[5]} == {1, 2, 3}
    assert [stats["tokens_in"], stats["tokens_out"]] == fake.tokens
    records = journal.read()
    assert len({(r["id"], r["attempt"]) for r in records}) == len(records) == sum(state.attempts.values())
    assert fake.auth == {f"Bearer {secret}"}
    assert secret not in caplog.text and secret not in journal.path.read_text()
    assert secret not in json.dumps(t.public_config()) and KEY_ENV not in json.dumps(t.public_config())


def test_unreachable_endpoint_fails_before_work(secret, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with pytest.raises(RuntimeError, match="unreachable"):
        teacher(f"http://127.0.0.1:{port}/v1").check()
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(RuntimeError, match=KEY_ENV):
        teacher(f"http://127.0.0.1:{port}/v1").check()


def test_request_cap_stops_and_rerun_resumes_without_duplicates(samples, secret, tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    with FakeOpenAI(samples, answer="label") as fake:
        with pytest.raises(RequestCapReached, match="max_requests=5"):
            run_fidelity_filter(teacher(fake.url), samples, journal, concurrency=3, budget=RequestBudget(5))
        assert len(fake.calls) == 5 and len(journal.read()) == 5
        state = run_fidelity_filter(teacher(fake.url), samples, journal, concurrency=3, budget=RequestBudget(100))
    assert len(fake.calls) == len(samples) == len(state.kept)
    assert len({c[0] for c in fake.calls}) == len(samples)  # nobody asked twice


def test_unencodable_image_is_skipped_or_named(samples, secret, tmp_path):
    bad = {**samples[0], "id": "broken-1", "images": [{"bytes": b"not a png", "path": None}]}
    with FakeOpenAI(samples, answer="label") as fake:
        state = run_fidelity_filter(
            teacher(fake.url), [bad, *samples[1:3]], Journal(tmp_path / "a.jsonl"), on_bad_sample="skip"
        )
        assert set(state.skipped) == {"broken-1"} and len(state.kept) == 2
        stats = fidelity_stats(state, [bad, *samples[1:3]], 3, 0.0)
        assert stats["skipped_bad_samples"] == 1 and stats["discarded"] == 0
        with pytest.raises(BadSampleError, match="broken-1.*images"):
            run_fidelity_filter(teacher(fake.url), [bad], Journal(tmp_path / "b.jsonl"))


def test_image_data_url_keeps_encoded_bytes(samples):
    import base64

    from PIL import Image

    raw = samples[0]["images"][0]  # decoded by datasets: a PIL image, re-encoded as PNG
    assert isinstance(raw, Image.Image)
    url = image_data_url(raw)
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert image_data_url({"bytes": png, "path": None}) == url  # encoded bytes are sent as they are
    with pytest.raises(BadSampleError, match="'s9'.*images"):
        image_data_url(42, "s9")


def test_artifact_key_config_has_no_secret_or_operational_knobs(secret):
    a = teacher("http://h/v1").public_config()
    assert a == teacher("http://h/v1/", timeout=9, max_retries=0, api_key_env="OTHER").public_config()
    assert a != teacher("http://h/v1", temperature=0.2).public_config()
    assert secret not in json.dumps(a)
