"""A logic judge behind an OpenAI-compatible chat endpoint (vLLM, SGLang, a hosted API).

Credentials and extras go through :class:`egt.utils.http.Endpoint`, as for the
OpenAI-compatible teacher: ``user:password@`` in ``base_url`` as HTTP basic auth,
else the key in the variable named by ``api_key_env`` (read at request time);
``extra_headers`` / ``extra_body`` as given, ``extra_headers_env`` /
``extra_body_env`` from variables read at request time. None of these values is
stored in :meth:`HTTPJudge.public_config`, a config, an artifact or a log. Requests retry on 429 (honouring
Retry-After), 5xx and timeouts; other 4xx fail at once. A sample whose request
fails for good gets ``None`` (the reward counts it and uses R_logic = 0).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from egt.rl.judges.base import JudgeItem, LogicJudge, consistency_prompt, parse_consistency
from egt.utils.http import Endpoint, HTTPRequestError, post_json

log = logging.getLogger(__name__)


class HTTPJudge(LogicJudge):
    """R_logic from a model behind an OpenAI-compatible endpoint asked egt's consistency question: +1 /
    −1 / 0 as :class:`egt.rl.judges.hf.HFJudge`; a request that fails for good gives None (counted, 0)."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "EGT_JUDGE_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_tokens: int = 8,
        temperature: float = 0.0,
        last_lines: int = 3,
        concurrency: int = 8,
        extra_headers: dict | None = None,
        extra_headers_env: dict | None = None,
        extra_body: dict | None = None,
        extra_body_env: dict | None = None,
    ):
        """Timeouts and backoffs in seconds. Raises ValueError for an ``*_env`` value that is not a
        variable name; an unset variable fails each request (a ``None`` verdict, logged)."""
        self.endpoint = Endpoint(
            base_url, "reward.judge", api_key_env, extra_headers, extra_headers_env, extra_body, extra_body_env
        )
        self.url = self.endpoint.base_url + "/chat/completions"  # without userinfo
        self.model, self.api_key_env = model, api_key_env
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.max_tokens, self.temperature, self.last_lines = max_tokens, temperature, last_lines
        self.concurrency = max(1, concurrency)

    def _headers(self) -> dict[str, str]:
        """Raises :class:`egt.utils.http.MissingSecretError` (an HTTPRequestError) for an unset variable."""
        return self.endpoint.headers()

    def _one(self, item: JudgeItem) -> int | None:
        payload = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": [{"role": "user", "content": consistency_prompt(item, self.last_lines)}],
        }
        try:
            payload = self.endpoint.body(payload)
            out = post_json(
                self.url, payload, self._headers(), self.timeout, self.max_retries, self.backoff, self.max_backoff
            )
            return parse_consistency(out["choices"][0]["message"]["content"])
        except (HTTPRequestError, KeyError, IndexError, TypeError, ValueError) as e:
            log.warning("[rl] http judge failed for sample %s: %s", item.sample.get("id"), e)
            return None

    def verdicts(self, items: list[JudgeItem]) -> list[int | None]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, items))

    def public_config(self) -> dict[str, Any]:
        """Redacted: URL without userinfo, extras (when set) with ``***`` and variable names."""
        extras = {k: v for k, v in self.endpoint.public().items() if k != "base_url"}
        return {
            "name": self.name,
            "url": self.url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "last_lines": self.last_lines,
            **extras,
        }
