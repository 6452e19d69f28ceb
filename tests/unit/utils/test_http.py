"""post_json: retries counted by cause, Retry-After honoured, bad bodies not retried, a request hook that stops."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from egt.utils.http import HTTPRequestError, check_reachable, post_json


@pytest.fixture
def server():
    script = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            status, headers, body = script.pop(0)
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", script
    srv.shutdown()
    srv.server_close()


def test_retries_by_cause_and_retry_after(server):
    url, script = server
    script += [(429, {"Retry-After": "3"}, b"{}"), (502, {}, b"{}"), (200, {}, b'{"ok": 1}')]
    sleeps, causes, requests = [], [], []
    out = post_json(
        url,
        {},
        backoff=0.5,
        max_backoff=10,
        sleep=sleeps.append,
        on_retry=causes.append,
        on_request=lambda: requests.append(1),
    )
    assert out == {"ok": 1} and causes == ["http_429", "http_5xx"] and len(requests) == 3
    assert sleeps[0] == 3.0 and 0.5 <= sleeps[1] <= 1.0  # Retry-After, then backoff 0.5·2¹·jitter∈[0.5, 1]


@pytest.mark.parametrize(
    "reply, cause",
    [
        ((200, {}, b"{not json"), "bad_json"),
        ((200, {"Content-Type": "text/html"}, b"<html>"), "content_type"),
        ((404, {}, b"{}"), "http_4xx"),
    ],
)
def test_final_failures_carry_their_cause_without_retry(server, reply, cause):
    url, script = server
    script.append(reply)
    causes = []
    with pytest.raises(HTTPRequestError) as err:
        post_json(url, {}, sleep=lambda s: None, on_retry=causes.append)
    assert err.value.cause == cause and causes == [] and not script


def test_request_hook_can_stop_before_sending(server):
    url, script = server
    script.append((200, {}, b"{}"))

    def refuse():
        raise RuntimeError("cap")

    with pytest.raises(RuntimeError, match="cap"):
        post_json(url, {}, on_request=refuse)
    assert script, "nothing was sent"
    assert check_reachable(url + "/models") == 501  # any answer means reachable (no do_GET here)
