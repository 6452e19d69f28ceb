"""distill with real teachers through the CLI: an OpenAI-compatible loopback server (kill -9 and resume;
secrets in a variable, the URL's userinfo, extra headers and body fields reach the server and nothing
written) and a local HF model (the tiny one)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from pathlib import Path

from datasets import load_from_disk

from cli_runner import QUICK, cli, done, kill_when
from egt.distill.fidelity import run_fidelity_filter
from egt.distill.openai_teacher import OpenAITeacher
from egt.distill.teacher import RequestBudget
from egt.utils.io import Journal
from openai_fake import FakeOpenAI

KEY_ENV, HEADER_ENV, BODY_ENV = "EGT_TEST_DISTILL_KEY", "EGT_TEST_DISTILL_HEADER", "EGT_TEST_DISTILL_BODY"
LIMIT = 40


def plan(sid: str, attempt: int, n: int) -> str | None:
    """Deterministic per (sample, attempt): transient 500/429 on a first request, some bad answers."""
    h = int(sid.rsplit("-", 1)[-1]) + 7 * attempt
    if n == 1 and h % 5 == 0:
        return "500"
    if n == 1 and h % 7 == 1:
        return "429"
    return {2: "disagree", 3: "wrong_format"}.get(h % 11)


def teacher_args(url: str) -> list[str]:
    return [
        "stages=[data,distill]",
        "distill/teacher=openai",
        f"distill.teacher.base_url={url}",
        "distill.teacher.model=fake",
        f"distill.teacher.api_key_env={KEY_ENV}",
        "distill.teacher.seed=0",
        "distill.teacher.timeout=5",
        "distill.teacher.backoff=0.001",
        "distill.teacher.max_backoff=0.01",
        "distill.concurrency=2",
        f"distill.limit={LIMIT}",
    ]


def secret_args(s: dict[str, str]) -> list[str]:
    """Secrets as a user may pass them: literals under secret-looking keys, variables by name or ${oc.env:…}."""
    return [
        f"distill.teacher.extra_headers.X-Api-Key={s['header']}",
        f"distill.teacher.extra_headers_env.X-Gateway-Token={HEADER_ENV}",
        f"distill.teacher.extra_body.api_key={s['body']}",
        f"distill.teacher.extra_body.metadata=${{oc.env:{BODY_ENV}}}",
    ]


def leaks(roots: list[Path], texts: dict[str, str], secrets: dict[str, str]) -> tuple[int, list[str]]:
    """(files scanned, where a secret was found) over every file under ``roots`` and the console outputs."""
    hits, files = [], [p for r in roots for p in r.rglob("*") if p.is_file()]
    for name, value in secrets.items():
        hits += [f"{name} in {p}" for p in files if value.encode() in p.read_bytes()]
        hits += [f"{name} in {t}" for t, text in texts.items() if value in text]
    return len(files), hits


def test_openai_teacher_killed_and_resumed_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """Also the secrets test: the killed run sends a bearer key, the resumed one (same artifact) basic auth
    from the URL; both an extra header and body field from literals and from variables."""
    s = {k: f"{k}-{uuid.uuid4().hex}" for k in ("key", "header", "header_env", "body", "body_env", "user")}
    s["password"] = f"p@ss:{uuid.uuid4().hex}"  # '@' and ':' percent-encoded in the URL
    secret = s["key"]
    for env, value in ((KEY_ENV, s["key"]), (HEADER_ENV, s["header_env"]), (BODY_ENV, s["body_env"])):
        monkeypatch.setenv(env, value)
    art = tmp_path / "art"
    cli(art, *QUICK, "stages=[data]")
    samples = list(load_from_disk(str(done(art, "data")[0] / "dataset"))["sft_pool"])[:LIMIT]
    with FakeOpenAI(samples, plan, latency=0.15) as fake:
        ref_teacher = OpenAITeacher(fake.url, "fake", api_key_env=KEY_ENV, seed=0, backoff=0.001, max_backoff=0.01)
        ref = run_fidelity_filter(
            ref_teacher, samples, Journal(tmp_path / "ref.jsonl"), concurrency=8, budget=RequestBudget(10_000)
        )
        ref_calls = len(fake.calls)
        fake.reset()
        journals = art / "distill"
        proc = cli(art, *QUICK, *teacher_args(fake.url), *secret_args(s), popen=True)
        t0 = time.time()
        while not list(journals.glob("*/journal.jsonl")) and time.time() - t0 < 120 and proc.poll() is None:
            time.sleep(0.05)
        journal = next(iter(journals.glob("*/journal.jsonl")), None)
        assert journal is not None, (art / "popen.log").read_text()[-3000:]
        kill_when(
            proc, lambda: journal.is_file() and journal.read_text().count("\n") >= 12, art, "12 journal lines", 120
        )
        assert not done(art, "distill")
        recorded = {(r["id"], r["attempt"]) for r in Journal(journal).read()}
        before, seen_before = len(fake.calls), len(fake.seen)
        userinfo = f"{s['user']}:{s['password'].replace('@', '%40').replace(':', '%3A')}@"
        out = cli(art, *QUICK, *teacher_args(fake.url.replace("//", "//" + userinfo)), *secret_args(s))
        asked_after = Counter((sid, a) for sid, a, _ in fake.calls[before:])
        killed, resumed = fake.seen[:seen_before], fake.seen[seen_before:]
    assert "resuming" in out and 0 < len(recorded) < ref_calls
    assert not recorded & set(asked_after), "a recorded (sample, attempt) was asked again"
    final = done(art, "distill")[0]
    rows = list(load_from_disk(str(final / "trajectories")))
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["id"]: (r["target"], r["attempts"]) for r in rows} == {
        k: (v["output"], v["attempt"]) for k, v in ref.kept.items()
    }
    records = Journal(final / "journal.jsonl").read()
    assert len({(r["id"], r["attempt"]) for r in records}) == len(records)
    stats = json.loads((final / "stats.json").read_text())
    assert stats["kept"] == len(ref.kept) and stats["kept"] + stats["discarded"] == LIMIT
    assert stats["retries_by_cause"].get("http_5xx", 0) > 0 and stats["retries_by_cause"].get("http_429", 0) > 0
    assert stats["failures_by_cause"]["wrong_answer"] > 0 and stats["tokens_in"] > 0
    # each secret reached the server where it belongs, on every request (the check's GET included)
    basic = "Basic " + base64.b64encode(f"{s['user']}:{s['password']}".encode()).decode()
    assert {h["Authorization"] for h, _ in killed} == {f"Bearer {secret}"}
    assert {h["Authorization"] for h, _ in resumed} == {basic}
    assert {(h["X-Api-Key"], h["X-Gateway-Token"]) for h, _ in killed + resumed} == {(s["header"], s["header_env"])}
    posts = [b for _, b in killed + resumed if b]
    assert posts and {(b["api_key"], b["metadata"]) for b in posts} == {(s["body"], s["body_env"])}
    assert "is not sent" in out  # the bearer key, with userinfo in the URL
    # …and nowhere else: artifacts, Hydra run dirs, logs (csv/wandb), both console outputs
    basic_token = basic.split()[1]
    n_files, hits = leaks([tmp_path], {"resumed console": out}, {**s, "basic": basic_token})
    print(f"secrets test: {n_files} files and 2 console outputs scanned for {len(s) + 1} secrets, {len(hits)} hits")
    assert n_files > 20 and not hits, hits
    config = json.loads((final / "_SUCCESS.json").read_text())["config"]["teacher"]
    assert config["extra_body"] == {"api_key": "***", "metadata": f"${{oc.env:{BODY_ENV}}}"}
    assert config["extra_headers_env"] == {"X-Gateway-Token": HEADER_ENV} and "@" not in config["base_url"]


def test_hf_teacher_on_the_tiny_model(tmp_path, tiny_model_dir):
    art = tmp_path / "art"
    cli(
        art,
        *QUICK,
        "stages=[data,distill]",
        "distill/teacher=hf",
        f"distill.teacher.model_path={tiny_model_dir}",
        "distill.limit=4",
        "distill.batch_size=4",
        "distill.max_attempts=2",
        "distill.teacher.max_new_tokens=8",
    )
    final = done(art, "distill")[0]
    stats = json.loads((final / "stats.json").read_text())
    records = Journal(final / "journal.jsonl").read()
    per_sample = Counter(r["id"] for r in records)
    assert stats["seen"] == 4 and stats["kept"] + stats["discarded"] == 4 and len(per_sample) == 4
    kept = {r["id"] for r in records if r["ok"]}
    assert all(n == 2 for sid, n in per_sample.items() if sid not in kept)  # max_attempts, then discarded
    assert sum(stats["attempts_histogram"].values()) == stats["kept"]
    assert stats["teacher_calls"] == len(records) and stats["requests"] == 0
    assert len(load_from_disk(str(final / "trajectories"))) == stats["kept"]
