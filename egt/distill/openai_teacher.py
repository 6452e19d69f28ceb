"""A teacher behind an OpenAI-compatible chat-completions endpoint (paper §2.2).

Each sample becomes one user turn: every image as a base64 ``data:`` URL, then
the judge prompt (the R1-Reward template by default, docs/design.md §2.3). Credentials and
extras go through :class:`egt.utils.http.Endpoint`: ``user:password@`` in
``base_url`` is sent as HTTP basic auth, else the key in the variable named by
``api_key_env`` as a bearer token (read at request time); ``extra_headers`` /
``extra_body`` are sent as given, ``extra_headers_env`` / ``extra_body_env`` name
variables read at request time. None of these values is stored in
:meth:`public_config` (the redacted form: URL without userinfo, ``***``, variable
names), an artifact, a log or an exception message.

Transport failures retry in :func:`egt.utils.http.post_json` (counted by cause);
what still fails — retries exhausted, another 4xx, malformed JSON, a non-JSON
content type, no choices, non-text content, ``finish_reason == "length"`` —
is a failed *attempt* with its cause (a :class:`Reply` without text), never a crash.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Any

from PIL import Image

from egt.data.prompt import TEMPLATES, build_user_text, template_key
from egt.data.schema import BadSampleError
from egt.distill.teacher import Reply, RequestBudget, Teacher
from egt.utils.http import Endpoint, HTTPRequestError, check_reachable, post_json
from egt.utils.images import to_rgb

__all__ = ["OpenAITeacher", "image_data_url", "message_text"]

_VERSION = 1
WHERE = "distill.teacher"


def image_data_url(image: Any, sample_id: Any = None) -> str:
    """``data:image/<fmt>;base64,…`` for a PIL image, ``{"bytes", "path"}`` dict, bytes or a path.

    Encoded bytes are sent as they are (PNG/JPEG/…); a PIL image without its
    file is encoded as PNG. Raises :class:`BadSampleError` naming the sample.
    """
    try:
        if isinstance(image, dict):
            data = image.get("bytes") or (open(image["path"], "rb").read() if image.get("path") else None)
        elif isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        elif isinstance(image, str):
            with open(image, "rb") as f:
                data = f.read()
        elif isinstance(image, Image.Image):
            buf = io.BytesIO()
            to_rgb(image).save(buf, format="PNG")
            data = buf.getvalue()
        else:
            raise TypeError(f"unsupported image type {type(image).__name__}")
        if not data:
            raise ValueError("image has neither bytes nor path")
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "PNG").lower()
            im.verify()
    except Exception as exc:  # PIL raises many types for broken files
        raise BadSampleError(sample_id, "images", f"cannot encode the image ({type(exc).__name__}: {exc})") from None
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode()}"


def message_text(out: dict[str, Any]) -> tuple[str | None, str | None]:
    """(text, None) or (None, cause) from a chat-completions response body.

    >>> message_text({"choices": [{"message": {"content": "<answer>1</answer>", "reasoning_content": "r"}}]})
    ('<think>r</think><answer>1</answer>', None)
    >>> message_text({"choices": []}), message_text({"choices": [{"message": {"content": 3}}]})
    ((None, 'empty_choices'), (None, 'content_type'))
    >>> message_text({"choices": [{"message": {"content": "<think>a"}, "finish_reason": "length"}]})
    (None, 'truncated')
    """
    choices = out.get("choices")
    if not isinstance(choices, list) or not choices:
        return None, "empty_choices"
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(p for p in parts if isinstance(p, str)) if parts else None
    if content is None or content == "":
        return None, "empty_content"
    if not isinstance(content, str):
        return None, "content_type"
    if choice.get("finish_reason") == "length":
        return None, "truncated"
    # reasoning servers (vLLM/SGLang reasoning parsers, DeepSeek) return the thinking apart
    thinking = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(thinking, str) and thinking.strip() and "<think>" not in content:
        content = f"<think>{thinking.strip()}</think>{content}"
    return content, None


class OpenAITeacher(Teacher):
    """Chat-completions teacher; one request per (sample, attempt), run concurrently by the filter."""

    name = "openai"
    batched = False

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        template: str = "r1_reward",
        system_prompt: str | None = None,
        temperature: float = 1.0,
        max_tokens: int = 4096,
        seed: int | None = None,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        check_timeout: float = 10.0,
        extra_body: dict | None = None,
        extra_headers: dict | None = None,
        extra_headers_env: dict | None = None,
        extra_body_env: dict | None = None,
    ):
        """Timeouts and backoffs in seconds. Raises ValueError for a missing URL / model, an unknown
        template or an ``*_env`` value that is not a variable name (see :class:`Endpoint`)."""
        if not base_url or not model:
            raise ValueError("distill/teacher=openai needs distill.teacher.base_url and distill.teacher.model")
        if template not in TEMPLATES:
            raise ValueError(f"distill.teacher.template={template!r}: choose from {sorted(TEMPLATES)}")
        self.endpoint = Endpoint(
            base_url, WHERE, api_key_env, extra_headers, extra_headers_env, extra_body, extra_body_env
        )
        self.base_url = self.endpoint.base_url  # without userinfo
        self.url = self.base_url + "/chat/completions"
        self.model, self.api_key_env, self.template, self.system_prompt = model, api_key_env, template, system_prompt
        self.temperature, self.max_tokens, self.seed = float(temperature), int(max_tokens), seed
        self.timeout, self.max_retries, self.backoff, self.max_backoff = timeout, max_retries, backoff, max_backoff
        self.check_timeout = check_timeout

    def public_config(self) -> dict:
        """What determines the outputs, redacted: no key, no userinfo, no operational knobs; the names of
        variables that extras come from, not their values (extras only when set, as before they existed)."""
        public = self.endpoint.public()
        out = {
            "name": self.name,
            "version": _VERSION,
            "base_url": public.pop("base_url"),
            "model": self.model,
            "template": template_key(self.template),
            "system_prompt": self.system_prompt,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "extra_body": public.pop("extra_body", {}),
        }
        return {**out, **public}

    def _headers(self) -> dict[str, str]:
        """Raises :class:`egt.utils.http.MissingSecretError` naming an unset variable."""
        return self.endpoint.headers()

    def check(self) -> None:
        """The variables named are set and ``<base_url>/models`` answers (any status but 401/403).

        Raises MissingSecretError (unset variable) or RuntimeError (unreachable, credentials refused)."""
        headers = self._headers()
        try:
            status = check_reachable(self.base_url + "/models", headers, self.check_timeout)
        except HTTPRequestError as e:
            raise RuntimeError(
                f"distill.teacher.base_url={self.base_url} is unreachable ({e}); nothing was asked. "
                "Is the server running and the URL right (it usually ends in /v1)?"
            ) from None
        if status in (401, 403):
            raise RuntimeError(
                f"{self.base_url} refused the credentials (HTTP {status}): check {self.endpoint.credentials()}"
            )

    def payload(self, sample: dict, attempt: int) -> dict[str, Any]:
        images = sample.get("images") or ([] if sample.get("image") is None else [sample["image"]])
        content: list[dict] = [
            {"type": "image_url", "image_url": {"url": image_data_url(im, sample.get("id"))}} for im in images
        ]
        text = build_user_text(sample["query"], sample["response_1"], sample["response_2"], self.template)
        content.append({"type": "text", "text": text})
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": content})
        body = self.endpoint.body(
            {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        )
        if self.seed is not None:  # a retry differs from earlier tries, and repeats itself
            body["seed"] = int(self.seed) + attempt
        return body

    def ask(self, sample: dict, attempt: int, budget: RequestBudget | None = None) -> Reply:
        """One attempt for one sample (retries inside); transport/format failures give a Reply with a cause."""
        body = self.payload(sample, attempt)
        headers = self._headers()  # an unset variable stops the run (MissingSecretError), it is no failed attempt
        reply = Reply(retries=Counter())

        def on_request() -> None:
            if budget is not None:
                budget.take()
            reply.requests += 1

        try:
            out = post_json(
                self.url,
                body,
                headers,
                self.timeout,
                self.max_retries,
                self.backoff,
                self.max_backoff,
                on_retry=lambda cause: reply.retries.update([cause]),
                on_request=on_request,
            )
        except HTTPRequestError as e:
            reply.cause = e.cause
            return reply
        usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
        reply.tokens_in, reply.tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        reply.text, reply.cause = message_text(out)
        return reply

    def answer(self, samples: list[dict], attempt: int, budget: RequestBudget | None = None) -> list[Reply]:
        return [self.ask(s, attempt, budget) for s in samples]

    def generate(self, samples: list[dict], attempt: int) -> list[str]:
        return [r.text or "" for r in self.answer(samples, attempt)]
