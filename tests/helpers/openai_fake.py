"""An OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

It knows the samples (labels included: it is the oracle) and finds which one a
request is about from its image data URLs and text. By default it answers as
the synthetic teacher would from the scene in ``meta`` (``answer="scene"``), or
with the label (``answer="label"``). The attempt number is the request's
``seed`` (teachers in tests set ``seed=0``). ``plan(sample_id, attempt, n)``
(``n``: 1 for the first request of that attempt) injects a fault:

``slow`` (sleep ``slow_s``, meant to be beyond the client timeout, then an empty answer),
``429`` (``Retry-After: retry_after``), ``500``, ``400``, ``bad_json``, ``html`` (wrong content type), ``wrong_format``,
``disagree`` (answers against the label), ``empty_choices``, ``truncated``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from egt.distill.openai_teacher import OpenAITeacher
from egt.distill.synthetic import SyntheticTeacher
from egt.distill.teacher import strip_label

Plan = Callable[[str, int, int], "str | None"]


def request_key(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for c in content:
            parts.append(c["image_url"]["url"] if c["type"] == "image_url" else c["text"])
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog: 32+ clients connect at once
    daemon_threads = True


class FakeOpenAI:
    def __init__(
        self,
        samples: list[dict],
        plan: Plan | None = None,
        answer: str = "scene",
        latency: float = 0.0,
        slow_s: float = 1.0,
        retry_after: str = "0.01",
        template: str = "r1_reward",
    ):
        probe = OpenAITeacher("http://unused/v1", "fake", api_key_env=None, template=template)
        self.by_key = {request_key(probe.payload(strip_label(s), 0)["messages"]): s for s in samples}
        self.plan, self.answer, self.latency = plan or (lambda sid, a, n: None), answer, latency
        self.slow_s, self.retry_after = slow_s, retry_after
        self.synthetic = SyntheticTeacher(error_base=0.05, error_slope=0.35)
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, str | None]] = []  # (sample id, attempt, fault)
        self.per_attempt: Counter = Counter()
        self.auth: set = set()
        self.bodies: list[str] = []
        self.seen: list[tuple[dict, dict]] = []  # every request's (headers, body without its messages)
        self.tokens = [0, 0]
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.handle_error = lambda *a: None  # a client that timed out closed the socket: fine
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def reset(self) -> None:
        """Forget what was asked (a fresh ``n`` for every (sample, attempt), as for a new server)."""
        with self.lock:
            self.calls, self.per_attempt, self.tokens, self.seen = [], Counter(), [0, 0], []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def text_for(self, sample: dict, attempt: int, fault: str | None) -> str:
        if fault == "disagree":
            return f"<think>I disagree.</think><answer>{3 - int(sample['label'])}</answer>"
        if fault == "wrong_format":
            return "The better one is \\boxed{1}."
        if self.answer == "label":
            return f"<think>Checked the image.</think><answer>{int(sample['label'])}</answer>"
        return self.synthetic.generate([strip_label(sample)], attempt)[0]

    def respond(self, body: dict) -> tuple[int, dict, bytes]:
        """(status, headers, body bytes) for one chat-completions request."""
        sample = self.by_key.get(request_key(body["messages"]))
        if sample is None:
            return 400, {}, b'{"error": "unknown sample"}'
        attempt = int(body.get("seed", 0))
        with self.lock:
            self.per_attempt[(sample["id"], attempt)] += 1
            fault = self.plan(sample["id"], attempt, self.per_attempt[(sample["id"], attempt)])
            self.calls.append((sample["id"], attempt, fault))
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault in ("429", "500", "400"):
            hdr = {"Retry-After": self.retry_after} if fault == "429" else {}
            return int(fault), hdr, b'{"error": {"message": "injected"}}'
        if fault == "bad_json":
            return 200, {}, b'{"choices": [{"message": {"content": "<think>'
        if fault == "html":
            return 200, {"Content-Type": "text/html"}, b"<html>gateway</html>"
        if fault == "empty_choices":
            return 200, {}, json.dumps({"choices": []}).encode()
        text = self.text_for(sample, attempt, fault)
        finish = "length" if fault == "truncated" else "stop"
        if fault == "truncated":
            text = text[: len(text) // 2]
        usage = {"prompt_tokens": 100, "completion_tokens": len(text) // 4}
        with self.lock:  # tokens the client receives (a slow answer is sent after the client gave up)
            if fault == "slow":
                return 200, {}, json.dumps({"choices": [], "usage": usage}).encode()
            self.tokens[0] += usage["prompt_tokens"]
            self.tokens[1] += usage["completion_tokens"]
        out = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage,
        }
        return 200, {}, json.dumps(out).encode()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.auth.add(self.headers.get("Authorization"))
                with fake.lock:
                    fake.seen.append((dict(self.headers), {}))
                self._send(200, {}, json.dumps({"data": [{"id": "fake"}]}).encode())

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                fake.auth.add(self.headers.get("Authorization"))
                body = json.loads(raw)
                with fake.lock:
                    fake.seen.append((dict(self.headers), {k: v for k, v in body.items() if k != "messages"}))
                if fake.latency:
                    time.sleep(fake.latency)
                self._send(*fake.respond(body))

            def log_message(self, *a):
                pass

        return Handler
