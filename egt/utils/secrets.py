"""Secrets are never written: one redaction for configs, summaries, messages, log lines and Hydra's files.

Where a secret can sit in egt: an environment variable named by an ``*_env`` key
(``api_key_env``, ``extra_headers_env``, ``extra_body_env``: read at request time),
a ``${oc.env:NAME}`` interpolation, the userinfo of a URL
(``http://user:password@host/v1``) or a literal value under a key that looks
secret (``api_key``, ``token``, ``Authorization``, ``password``, ``X-Api-Key``, …).

:func:`redact` replaces such values by ``"***"`` (a value taken from a variable
becomes ``${oc.env:NAME}``: the name, never the value), and strips URL userinfo
to ``scheme://***@host``. :func:`redact_text` does the same inside free text
(``key=value`` / ``key: value`` pairs, ``Bearer …``, URLs) and also replaces every
value :func:`remember`-ed so far, wherever it appears. The CLI remembers the
secrets of its config before anything is logged (:class:`RedactSecrets`, a Hydra
callback that also writes Hydra's ``.hydra/*.yaml`` and ``multirun.yaml``
redacted), and every log record passes :func:`redact_text`
(:func:`install_log_redaction`). Artifact keys hash the redacted form, so they
carry the names of the variables, never their values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "REDACTED",
    "RedactSecrets",
    "config_container",
    "install_log_redaction",
    "is_secret_key",
    "redact",
    "redact_text",
    "redacted_argv",
    "register_config",
    "remember",
    "scrub_exception",
    "split_userinfo",
]

REDACTED = "***"
EXTRAS = ("extra_headers", "extra_body")  # request extras: a ${oc.env:…} inside is a secret whatever its key
_ALWAYS = {
    "password",
    "passwd",
    "passphrase",
    "secret",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "apikey",
    "accesskey",
    "privatekey",
    "auth",
}
# "token" / "key" are secret alone (token) or after one of these ("api_key", "access_token", "X-Api-Key"),
# not in "pad_token", "eos_token_id", "headline_key" or an artifact's "key"
_QUALIFIERS = {
    "api",
    "access",
    "auth",
    "bearer",
    "refresh",
    "session",
    "secret",
    "private",
    "client",
    "hf",
    "github",
    "gh",
    "wandb",
    "openai",
    "subscription",
    "security",
    "personal",
    "app",
    "id",
}
_HEADER_WORDS = {"key", "token", "signature"}  # in a header name these alone look secret ("X-Key", "X-Token")
_MIN_REMEMBERED = 6  # shorter values are not searched for in free text (they would match ordinary words)

_ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)[^}]*\}")
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*\\?://)[^/?#\s\"'<>]*@")  # Hydra escapes ':' as '\:'
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=\-]+")
_VALUE = r"[^\s\"',;}\]?&#]+"
# key=value / key: value; a sweep's list (a.api_key=k1,k2) is one value: items without '=' or ':' follow
_KV = re.compile(
    rf"(?P<k>[A-Za-z_][\w.\-]*)(?P<q>[\"']?)(?P<sep>\s*[=:]\s*)(?P<q2>[\"']?)"
    rf"(?P<v>{_VALUE}(?:,[^\s\"',;}}\]?&#=:]+(?=[,\s\"'}}\]]|$))*)"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_lock = threading.Lock()
_known: dict[str, str | None] = {}  # value -> the variable it came from (None: a literal)
_known_re: re.Pattern | None = None


def _parts(name: str) -> list[str]:
    return [p for p in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if p]


def is_secret_key(name: Any, header: bool = False) -> bool:
    """Whether the value under config / header key ``name`` looks secret; ``*_env`` keys hold names.

    >>> [is_secret_key(k) for k in ("api_key", "X-Api-Key", "access_token", "token", "password", "Authorization")]
    [True, True, True, True, True, True]
    >>> [is_secret_key(k) for k in ("api_key_env", "max_tokens", "pad_token", "eos_token_id", "key", "headline_key")]
    [False, False, False, False, False, False]
    >>> is_secret_key("X-Key"), is_secret_key("X-Key", header=True)
    (False, True)
    """
    parts = _parts(str(name))
    if not parts or parts[-1] == "env":
        return False
    if _ALWAYS & set(parts) or parts == ["token"]:
        return True
    if header and _HEADER_WORDS & set(parts):
        return True
    return any(p in ("token", "key") and i > 0 and parts[i - 1] in _QUALIFIERS for i, p in enumerate(parts))


def _is_path_secret(dotted: str) -> bool:
    """``a.extra_headers.X-Key`` (header context from any ``*headers`` component) or ``a.b.api_key``."""
    comps = dotted.split(".")
    return is_secret_key(comps[-1], header=any(c.endswith("headers") for c in comps[:-1]))


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, user, password)``; user and password percent-decoded (None when absent).

    >>> split_userinfo("http://me:p%40ss@host:8000/v1")
    ('http://host:8000/v1', 'me', 'p@ss')
    >>> split_userinfo("http://host/v1")
    ('http://host/v1', None, None)
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), (unquote(password) if colon else None)


def remember(value: Any, env: str | None = None) -> None:
    """Treat ``value`` (from variable ``env``, if any) as a secret in every later :func:`redact_text`."""
    global _known_re
    if not isinstance(value, str) or len(value) < _MIN_REMEMBERED or value.startswith("${"):
        return
    with _lock:
        if value in _known and (_known[value] or not env):
            return
        _known[value] = env
        _known_re = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def _remember_url(text: str) -> None:
    for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.\-]*\\?://[^/?#\s\"'<>]*@[^\s\"'<>]*", text):
        url = m.group(0).replace("\\:", ":")  # as Hydra records an override
        _, _, password = split_userinfo(url)
        userinfo = url.split("://", 1)[1].rpartition("@")[0]
        for v in (userinfo, password, userinfo.partition(":")[2]):  # decoded and as written
            remember(v)


def redact_text(text: str) -> str:
    """``text`` with remembered secrets, URL userinfo, ``Bearer …`` and secret ``key=value`` pairs hidden.

    >>> redact_text("GET http://me:pw@h/v1 failed; api_key=sk-1 max_tokens=8 Authorization: Bearer abc")
    'GET http://***@h/v1 failed; api_key=*** max_tokens=8 Authorization: Bearer ***'
    """
    if not isinstance(text, str) or not text:
        return text
    pattern = _known_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)

    def kv(m: re.Match) -> str:
        v = m.group("v")
        if v in (REDACTED, "Bearer", "Basic", "Token") or v.startswith("${") or not _is_path_secret(m.group("k")):
            return m.group(0)
        return m.group(0)[: m.start("v") - m.start(0)] + REDACTED

    return _KV.sub(kv, text)


def _secret_value(value: Any) -> Any:
    if value is None or value == "" or (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return value  # unset, or a reference (an interpolation names where the value is, not the value)
    env = _known.get(value) if isinstance(value, str) else None
    return f"${{oc.env:{env}}}" if env else REDACTED


def redact(obj: Any, _headers: bool = False) -> Any:
    """A copy of a dict / list / str tree with every secret hidden (see the module docstring).

    >>> redact({"base_url": "http://u:pw@h/v1", "api_key_env": "MY_KEY", "max_tokens": 8,
    ...         "extra_headers": {"X-Key": "k1", "X-Org": "o"}, "extra_body": {"api_key": "k2", "top_k": 5}})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'base_url': 'http://***@h/v1', 'api_key_env': 'MY_KEY', 'max_tokens': 8,
     'extra_headers': {'X-Key': '***', 'X-Org': 'o'}, 'extra_body': {'api_key': '***', 'top_k': 5}}
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if str(k).endswith("_env"):
                out[k] = v  # the names of variables, kept: they are what an artifact key may hash
            elif is_secret_key(k, header=_headers):
                out[k] = _secret_value(v) if not isinstance(v, (Mapping, list, tuple)) else REDACTED
            else:
                out[k] = redact(v, _headers=str(k).endswith("headers"))
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, _headers) for v in obj)
    if isinstance(obj, str):
        env = _known.get(obj)
        return f"${{oc.env:{env}}}" if env else redact_text(obj)
    return obj


def _keep_env_refs(raw: Any, resolved: Any, secret: bool = False) -> Any:
    """``resolved`` where ``raw`` held a ``${oc.env:…}`` in a secret context put back as that reference."""
    if isinstance(raw, dict) and isinstance(resolved, dict):
        return {
            k: _keep_env_refs(raw.get(k), v, secret or k in EXTRAS or is_secret_key(k)) for k, v in resolved.items()
        }
    if isinstance(raw, list) and isinstance(resolved, list) and len(raw) == len(resolved):
        return [_keep_env_refs(r, v, secret) for r, v in zip(raw, resolved)]
    if secret and isinstance(raw, str) and _ENV_REF.search(raw):
        return raw
    return resolved


def config_container(cfg: Any) -> Any:
    """A config (DictConfig or plain) as plain data, interpolations resolved, then :func:`redact`-ed: what
    may be logged, put in a wandb run or hashed into an artifact key."""
    if not OmegaConf.is_config(cfg):
        return redact(cfg)
    raw = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)  # choice fields (egt.choices) as str
    return redact(_keep_env_refs(raw, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def _register(node: Any, secret: bool, extras: bool, headers: bool) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            key = str(k)
            if key.endswith("_env"):  # names of variables: their values are secrets
                for name in v.values() if isinstance(v, dict) else [v]:
                    if isinstance(name, str) and _ENV_NAME.match(name):
                        remember(os.environ.get(name), name)
                    elif isinstance(name, str):
                        remember(name)  # a value pasted where a name belongs
                continue
            _register(v, secret or is_secret_key(key, header=headers), extras or key in EXTRAS, key.endswith("headers"))
    elif isinstance(node, list):
        for v in node:
            _register(v, secret, extras, headers)
    elif isinstance(node, str):
        for name in _ENV_REF.findall(node):
            if secret or extras:
                remember(os.environ.get(name), name)
        if secret and not node.startswith("${"):
            remember(node)
        _remember_url(node)
        for m in _KV.finditer(node):  # command-line overrides: "a.api_key=…"
            if _is_path_secret(m.group("k")) and not m.group("v").startswith("${"):
                remember(m.group("v"))


def register_config(cfg: Any) -> None:
    """:func:`remember` every secret a config holds or points to: values under secret-looking keys, the
    values of variables named by ``*_env`` keys or by ``${oc.env:…}`` in request extras or secret keys,
    URL userinfo (Hydra's recorded command-line overrides included)."""
    raw = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    _register(raw, False, False, False)


def env_name(name: Any, where: str) -> str:
    """``name`` checked as an environment variable's name; a value pasted there is refused unechoed.

    Raises ValueError naming the config key ``where``.
    """
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        remember(name if isinstance(name, str) else None)
        raise ValueError(
            f"{where} must name an environment variable (letters, digits, _), not hold its value: "
            f"export the value, e.g. MY_KEY=…, and write {where}=MY_KEY"
        )
    return name


def install_log_redaction() -> None:
    """Every log record from now on passes :func:`redact_text` (its message and traceback), whatever
    handlers Hydra or Lightning configure later (a record factory, not a handler filter). Idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "egt_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it later
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact_text(text)
        return record

    factory.egt_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def scrub_exception(exc: BaseException) -> BaseException:
    """Redact the string arguments of ``exc`` and of its causes in place (what a traceback prints)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        with contextlib.suppress(Exception):
            if any(isinstance(a, str) and redact_text(a) != a for a in e.args):
                e.args = tuple(redact_text(a) if isinstance(a, str) else a for a in e.args)
        e = e.__cause__ or e.__context__
    return exc


@contextlib.contextmanager
def redacted_argv() -> Iterator[None]:
    """``sys.argv`` redacted for the duration (wandb records the command line in its run)."""
    saved = list(sys.argv)
    sys.argv[:] = [redact_text(a) for a in saved]
    try:
        yield
    finally:
        sys.argv[:] = saved


def _save_yaml(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(obj)), encoding="utf-8")
    tmp.replace(path)


class RedactSecrets(Callback):
    """Hydra callback (``hydra.callbacks.redact_secrets`` in conf/config.yaml).

    At run / multirun start it remembers the config's secrets and installs the log redaction, before
    Hydra's launcher logs a job's overrides. At job start it writes ``config.yaml``, ``hydra.yaml`` and
    ``overrides.yaml`` redacted into ``<output dir>/.hydra`` (egt sets ``hydra.output_subdir: null``, so
    Hydra never writes them itself; with another ``output_subdir`` Hydra's files there are overwritten at
    once) and rewrites a multirun's ``multirun.yaml`` redacted (Hydra's sweeper writes it before the
    first job; it is rewritten again at the end of the multirun).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        register_config(config)
        install_log_redaction()

    on_multirun_start = on_run_start

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        register_config(config)
        install_log_redaction()
        hc = config.hydra
        out = Path(str(hc.runtime.output_dir)) / str(hc.output_subdir or ".hydra")
        out.mkdir(parents=True, exist_ok=True)
        raw = OmegaConf.to_container(config, resolve=False)
        hydra_node = raw.pop("hydra")
        _save_yaml(redact(raw), out / "config.yaml")
        _save_yaml(redact({"hydra": hydra_node}), out / "hydra.yaml")
        _save_yaml(redact(hydra_node["overrides"]["task"]), out / "overrides.yaml")
        self._rewrite_multirun(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._rewrite_multirun(config)

    @staticmethod
    def _rewrite_multirun(config: DictConfig) -> None:
        if not str(config.hydra.mode).endswith("MULTIRUN"):
            return
        path = Path(str(config.hydra.sweep.dir)) / "multirun.yaml"
        if path.is_file():
            _save_yaml(redact(OmegaConf.to_container(OmegaConf.load(path), resolve=False)), path)
