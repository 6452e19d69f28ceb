"""The http judge against a local OpenAI-compatible stub: retries, no retry on 4xx, no leaked key, basic auth
from the URL, extra headers and body fields."""

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from egt.rl.judges.base import JudgeItem
from egt.rl.judges.http import HTTPJudge
from egt.rl.reward import CompositeReward
from egt.utils import http as egt_http

SECRET = "sk-test-0123456789-do-not-log"


class Stub:
    """Serves a scripted list of (status, headers, reply) per request; records auth headers."""

    def __init__(self, script):
        self.script, self.calls, self.auth, self.seen = list(script), 0, [], []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.auth.append(self.headers.get("Authorization"))
                stub.seen.append((dict(self.headers), body))
                status, headers, reply = stub.script[min(stub.calls, len(stub.script) - 1)]
                stub.calls += 1
                assert body["messages"][0]["role"] == "user"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                payload = {"choices": [{"message": {"content": reply}}]} if status == 200 else {"error": reply}
                self.wfile.write(json.dumps(payload).encode())

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def stub(request):
    s = Stub(request.param)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    sleeps = []
    real = egt_http.post_json

    def no_sleep(*a, **kw):
        kw["sleep"] = sleeps.append
        return real(*a, **kw)

    monkeypatch.setattr("egt.rl.judges.http.post_json", no_sleep)
    monkeypatch.setenv("EGT_JUDGE_API_KEY", SECRET)
    return sleeps


ITEM = JudgeItem({"id": "s1"}, "Response 1 is wrong. Response 2 is right.", 2)


@pytest.mark.parametrize(
    "stub", [[(429, {"Retry-After": "7"}, "slow down"), (503, {}, "busy"), (200, {}, "Yes.")]], indirect=True
)
def test_retries_429_with_retry_after_then_5xx(stub, fast, caplog):
    caplog.set_level(logging.DEBUG)
    judge = HTTPJudge(stub.url, "m", backoff=0.5, max_backoff=30)
    assert judge.verdicts([ITEM]) == [1]
    assert stub.calls == 3 and fast[0] == 7.0 and 0.25 <= fast[1] <= 1.0  # Retry-After, then backoff 2·0.5·jitter
    assert stub.auth == [f"Bearer {SECRET}"] * 3
    assert SECRET not in caplog.text and "HTTP 429" in caplog.text


@pytest.mark.parametrize("stub", [[(400, {}, "bad request"), (200, {}, "yes")]], indirect=True)
def test_4xx_is_not_retried_and_counts_as_error(stub, fast, caplog):
    caplog.set_level(logging.DEBUG)
    terms = CompositeReward(judge=HTTPJudge(stub.url, "m")).terms(
        [{"label": 2}], ["<think>x</think><answer>2</answer>"]
    )
    assert stub.calls == 1 and not fast
    assert terms.verdicts["error"] == 1 and terms.logic == [0.0] and terms.reward == [1.5]
    assert "HTTP 400" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("stub", [[(500, {}, "boom")]], indirect=True)
def test_retries_exhausted(stub, fast, caplog):
    assert HTTPJudge(stub.url, "m", max_retries=2).verdicts([ITEM]) == [None]
    assert stub.calls == 3 and len(fast) == 2 and SECRET not in caplog.text


@pytest.mark.parametrize("stub", [[(200, {}, "no"), (200, {}, "no")]], indirect=True)
def test_verdicts_and_missing_key(stub, monkeypatch):
    assert HTTPJudge(stub.url, "m").verdicts([ITEM]) == [-1]
    monkeypatch.delenv("EGT_JUDGE_API_KEY")
    assert HTTPJudge(stub.url, "m").verdicts([ITEM]) == [None]  # named variable missing: an error, not a crash
    assert HTTPJudge(stub.url, "m", api_key_env=None).verdicts([ITEM]) == [-1]
    assert SECRET not in json.dumps(HTTPJudge(stub.url, "m").public_config())


def test_timeout_is_retried(fast):
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts, never answers
    try:
        judge = HTTPJudge(f"http://127.0.0.1:{srv.getsockname()[1]}/v1", "m", timeout=0.2, max_retries=1)
        assert judge.verdicts([ITEM]) == [None] and len(fast) == 1
    finally:
        srv.close()


@pytest.mark.parametrize("stub", [[(200, {}, "yes")]], indirect=True)
def test_basic_auth_from_the_url_and_extras_from_variables(stub, fast, monkeypatch, caplog):
    monkeypatch.setenv("EGT_TEST_JUDGE_HDR", "hdr-secret-123456")
    judge = HTTPJudge(
        stub.url.replace("//", "//ann:pw%2Fx@"),
        "m",
        extra_headers={"X-Org": "o"},
        extra_headers_env={"X-Api-Key": "EGT_TEST_JUDGE_HDR"},
        extra_body={"top_k": 1},
    )
    assert judge.verdicts([ITEM]) == [1]
    headers, body = stub.seen[0]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"ann:pw/x").decode()
    assert (headers["X-Org"], headers["X-Api-Key"], body["top_k"]) == ("o", "hdr-secret-123456", 1)
    public = json.dumps(judge.public_config())
    assert "ann" not in public and "hdr-secret" not in public and "EGT_TEST_JUDGE_HDR" in public
    assert SECRET not in caplog.text  # the bearer key is not sent with userinfo, nor logged
