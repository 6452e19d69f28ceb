"""POST JSON to an HTTP endpoint with retries (429 honouring Retry-After, 5xx, timeouts).

Standard library only. Headers are never logged or put into an exception
message, so an ``Authorization`` header cannot leak into logs. Every failure
has a short *cause* (``timeout``, ``connection``, ``http_429``, ``http_5xx``,
``http_4xx``, ``bad_json``, ``content_type``) so callers can count them:
``on_retry(cause)`` is called before each retry, :class:`HTTPRequestError`
carries the cause of a final failure, and ``on_request()`` is called before
every request (a request cap raises from it).
"""
from __future__ import annotations

import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class HTTPRequestError(RuntimeError):
    """A request that failed for good: a non-retryable status, a bad body, or retries exhausted."""

    def __init__(self, message: str, status: int | None = None, cause: str = "http_error"):
        super().__init__(message)
        self.status = status
        self.cause = cause


def status_cause(status: int) -> str:
    """``http_429``, ``http_5xx`` or ``http_4xx`` (other statuses: ``http_<code>``).

    >>> status_cause(503), status_cause(429), status_cause(404)
    ('http_5xx', 'http_429', 'http_4xx')
    """
    if status == 429:
        return "http_429"
    return f"http_{status // 100}xx" if status >= 400 else f"http_{status}"


def error_cause(err: BaseException) -> str:
    """``timeout`` or ``connection`` for a transport error."""
    reason = getattr(err, "reason", err)
    if isinstance(err, (socket.timeout, TimeoutError)) or isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout"
    return "connection"


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to the backoff
        return None


def _decode(url: str, resp: Any) -> dict[str, Any]:
    ctype = (resp.headers.get("Content-Type") or "application/json").lower()
    if "json" not in ctype:
        raise HTTPRequestError(f"POST {url}: response Content-Type is {ctype!r}, not JSON", resp.status,
                               "content_type")
    raw = resp.read()
    try:
        out = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPRequestError(f"POST {url}: malformed JSON ({e}; {len(raw)} bytes)", resp.status, "bad_json") from None
    if not isinstance(out, dict):
        raise HTTPRequestError(f"POST {url}: JSON body is a {type(out).__name__}, not an object", resp.status,
                               "bad_json")
    return out


def post_json(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 60.0,
              max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
              sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[str], None] | None = None,
              on_request: Callable[[], None] | None = None) -> dict[str, Any]:
    """The decoded JSON response of one POST; retries with exponential backoff (+ jitter) on
    429/5xx/timeouts/connection errors, honouring ``Retry-After``; raises
    :class:`HTTPRequestError` at once on any other 4xx or an undecodable body."""
    body = json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    for attempt in range(max_retries + 1):
        wait = min(max_backoff, backoff * 2 ** attempt) * (0.5 + random.random() / 2)
        if on_request is not None:
            on_request()
        try:
            req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return _decode(url, resp)
        except urllib.error.HTTPError as e:
            cause = status_cause(e.code)
            if e.code not in RETRY_STATUS:
                detail = e.read()[:200].decode(errors="replace") if e.fp else ""
                raise HTTPRequestError(f"POST {url} → HTTP {e.code} (not retried): {detail}", e.code, cause) from None
            after = _retry_after(e)
            wait = min(max_backoff, after if after is not None else wait)
            reason, status = f"HTTP {e.code}", e.code
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason, status, cause = f"{type(e).__name__}: {getattr(e, 'reason', e)}", None, error_cause(e)
        if attempt == max_retries:
            raise HTTPRequestError(f"POST {url} failed after {max_retries + 1} attempts ({reason})", status, cause)
        if on_retry is not None:
            on_retry(cause)
        log.warning("POST %s: %s, retry %d/%d in %.2fs", url, reason, attempt + 1, max_retries, wait)
        sleep(wait)
    raise AssertionError("unreachable")


def check_reachable(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> int:
    """GET ``url`` once; the HTTP status (any status means the server answered). Raises
    :class:`HTTPRequestError` (cause ``timeout``/``connection``) when nothing answers."""
    req = urllib.request.Request(url, headers=headers or {}, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, ValueError) as e:
        raise HTTPRequestError(f"GET {url}: {type(e).__name__}: {getattr(e, 'reason', e)}", None,
                               error_cause(e) if not isinstance(e, ValueError) else "connection") from None
