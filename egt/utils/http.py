"""POST JSON to an HTTP endpoint with retries (429 honouring Retry-After, 5xx, timeouts).

The transport is the standard library. Headers are never logged or put into an exception
message, so an ``Authorization`` header cannot leak into logs. Every failure
has a short *cause* (``timeout``, ``connection``, ``http_429``, ``http_5xx``,
``http_4xx``, ``bad_json``, ``content_type``) so callers can count them:
``on_retry(cause)`` is called before each retry, :class:`HTTPRequestError`
carries the cause of a final failure, and ``on_request()`` is called before
every request (a request cap raises from it).

:class:`Endpoint` holds what a teacher or judge sends besides its payload: basic auth from the URL's
userinfo, a bearer key or extra headers / body fields from environment variables, read per request.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from omegaconf import OmegaConf

from egt.utils import secrets

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
        raise HTTPRequestError(f"POST {url}: response Content-Type is {ctype!r}, not JSON", resp.status, "content_type")
    raw = resp.read()
    try:
        out = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPRequestError(f"POST {url}: malformed JSON ({e}; {len(raw)} bytes)", resp.status, "bad_json") from None
    if not isinstance(out, dict):
        raise HTTPRequestError(
            f"POST {url}: JSON body is a {type(out).__name__}, not an object", resp.status, "bad_json"
        )
    return out


def post_json(
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
    on_request: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The decoded JSON response of one POST; retries with exponential backoff (+ jitter) on
    429/5xx/timeouts/connection errors, honouring ``Retry-After``; raises
    :class:`HTTPRequestError` at once on any other 4xx or an undecodable body."""
    body = json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    for attempt in range(max_retries + 1):
        wait = min(max_backoff, backoff * 2**attempt) * (0.5 + random.random() / 2)
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
        raise HTTPRequestError(
            f"GET {url}: {type(e).__name__}: {getattr(e, 'reason', e)}",
            None,
            error_cause(e) if not isinstance(e, ValueError) else "connection",
        ) from None


EXTRAS = ("extra_headers", "extra_headers_env", "extra_body", "extra_body_env")


def http_extras_node() -> Any:
    """The request extras of an HTTP teacher / judge, all empty, as *open* dicts (a DictConfig stored as
    ``http_extras`` in Hydra's ConfigStore, pulled in by conf/distill/teacher/openai.yaml and
    conf/reward/judge/http.yaml): Hydra's struct mode would refuse a new key in an empty dict, so
    ``distill.teacher.extra_body={k: v}`` or ``distill.teacher.extra_headers.X-Org=o`` would fail."""
    node = OmegaConf.create({k: {} for k in EXTRAS})
    for k in EXTRAS:
        OmegaConf.set_struct(node[k], False)
    return node


class MissingSecretError(HTTPRequestError):
    """An environment variable named by ``api_key_env`` / ``*_env`` is unset or empty (cause ``missing_env``)."""

    def __init__(self, message: str):
        super().__init__(message, None, "missing_env")


def _plain_dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a mapping, e.g. {where}={{name: value}}; got a {type(value).__name__}")
    return dict(value)


class Endpoint:
    """An OpenAI-compatible base URL with its credentials and extra request fields (teachers, judges).

    ``base_url`` may carry ``user:password@`` (percent-encoded as in any URL): it is sent as HTTP basic
    auth and stripped from :attr:`base_url`, the URL requests go to and messages name. Otherwise the key
    in the variable named by ``api_key_env`` is sent as ``Authorization: Bearer …`` (``None``: no key).
    ``extra_headers`` / ``extra_body`` are sent as given (a ``${oc.env:NAME}`` in them is resolved by
    Hydra); ``extra_headers_env`` / ``extra_body_env`` map a header / top-level body field to the *name*
    of a variable read at every request. ``where`` (``distill.teacher``) prefixes the config keys that
    messages name. :meth:`public` is the redacted form (:mod:`egt.utils.secrets`): URL without
    userinfo, secret-looking values as ``***``, variable names kept.

    Raises ValueError when an ``*_env`` value is not a variable name, TypeError when an extra is not a
    mapping; :meth:`headers` / :meth:`body` raise :class:`MissingSecretError` for an unset variable.
    """

    def __init__(
        self,
        base_url: str,
        where: str,
        api_key_env: str | None = None,
        extra_headers: Any = None,
        extra_headers_env: Any = None,
        extra_body: Any = None,
        extra_body_env: Any = None,
    ):
        self.where = where
        self.base_url, user, password = secrets.split_userinfo(str(base_url).rstrip("/"))
        self._basic = None
        if user is not None:
            secrets.remember(password)
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._basic = f"Basic {token}"
        self.api_key_env = None if api_key_env is None else secrets.env_name(api_key_env, f"{where}.api_key_env")
        self.extra_headers = {str(k): str(v) for k, v in _plain_dict(extra_headers, f"{where}.extra_headers").items()}
        self.extra_body = _plain_dict(extra_body, f"{where}.extra_body")
        self.extra_headers_env = {
            str(k): secrets.env_name(v, f"{where}.extra_headers_env.{k}")
            for k, v in _plain_dict(extra_headers_env, f"{where}.extra_headers_env").items()
        }
        self.extra_body_env = {
            str(k): secrets.env_name(v, f"{where}.extra_body_env.{k}")
            for k, v in _plain_dict(extra_body_env, f"{where}.extra_body_env").items()
        }
        self._warned = False

    def _env(self, name: str, key: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise MissingSecretError(
                f"the environment variable {name} ({self.where}.{key}) is not set: export it, "
                f"or remove {self.where}.{key}"
            )
        secrets.remember(value, name)
        return value

    def headers(self) -> dict[str, str]:
        """Authorization (basic from the URL, else bearer from ``api_key_env``), then the extra headers."""
        out: dict[str, str] = {}
        if self._basic is not None:
            out["Authorization"] = self._basic
            if self.api_key_env and os.environ.get(self.api_key_env) and not self._warned:
                self._warned = True
                log.warning(
                    "%s.base_url carries user:password, sent as HTTP basic auth: the key in $%s is not "
                    "sent (for a server that wants it too: %s.extra_headers_env={X-Api-Key: %s})",
                    self.where,
                    self.api_key_env,
                    self.where,
                    self.api_key_env,
                )
        elif self.api_key_env:
            out["Authorization"] = f"Bearer {self._env(self.api_key_env, 'api_key_env')}"
        out.update(self.extra_headers)
        out.update({h: self._env(n, f"extra_headers_env.{h}") for h, n in self.extra_headers_env.items()})
        return out

    def credentials(self) -> str:
        """Where the credentials come from, in words (no value): for a 401/403 message."""
        where = [
            f"the user:password in {self.where}.base_url"
            if self._basic
            else f"the key in ${self.api_key_env} ({self.where}.api_key_env)"
            if self.api_key_env
            else f"{self.where}.api_key_env (null: no key is sent)"
        ]
        where += [f"header {h}" for h in [*self.extra_headers, *self.extra_headers_env]]
        return ", ".join(where)

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with the extra body fields (they win over egt's own)."""
        return {
            **payload,
            **self.extra_body,
            **{f: self._env(n, f"extra_body_env.{f}") for f, n in self.extra_body_env.items()},
        }

    def public(self) -> dict[str, Any]:
        """What identifies the endpoint and its extras, redacted; empty extras left out."""
        out: dict[str, Any] = {"base_url": self.base_url}
        extras = secrets.redact({"extra_headers": self.extra_headers, "extra_body": self.extra_body})
        for key in ("extra_headers", "extra_headers_env", "extra_body", "extra_body_env"):
            value = extras.get(key, getattr(self, key))
            if value:
                out[key] = value
        return out
