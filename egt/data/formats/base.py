"""What every data format shares: the :class:`DataFormat` contract, why a row is refused, and reading a
row's images, columns and turns.

A format turns one row of a release's table into egt's sample fields (``query``, ``response_1``,
``response_2``, ``label``, ``images``) or refuses it with :class:`RowRejected` naming the field and a
reason: a bad row (:data:`REASONS`: obeys ``data.on_bad_sample``) or one excluded by design
(:data:`EXCLUSIONS`: always dropped, counted apart). egt's formats are the modules of this package, one
per name (``format: rlaif_v`` is ``egt/data/formats/rlaif_v.py``; egt.components); an outside one is
``format: {_target_: your.module.Format}``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Mapping

from PIL import Image

from egt.data.schema import check_image

__all__ = [
    "DEFAULT_COLUMNS",
    "EXCLUSIONS",
    "REASONS",
    "DataFormat",
    "RowRejected",
    "column",
    "content_text",
    "nonempty",
    "read_image",
    "read_images",
    "turn_text",
]

DEFAULT_COLUMNS = {
    "id": "id",
    "query": "query",
    "chosen": "chosen",
    "rejected": "rejected",
    "response_1": "response_1",
    "response_2": "response_2",
    "label": "label",
    "image": "image",
    "images": "images",
    "category": "category",
}
# reasons a row is bad (what a skip is counted under): they obey data.on_bad_sample
REASONS = (
    "missing column",
    "missing image",
    "unreadable image",
    "empty response",
    "identical responses",
    "label not derivable",
    "unparsable R1-Reward prompt",
    "unreadable turn",
)
# rows a release holds that are no single-turn image preference pair, by design: always dropped, counted apart
EXCLUSIONS = ("tie", "multi-turn", "video only", "no rated pair")


class RowRejected(Exception):
    """A row that does not become a sample: the field at fault, the reason (one of :data:`REASONS` or
    :data:`EXCLUSIONS`) and a short detail."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{field}: {reason} ({detail})")
        self.field, self.reason, self.detail = field, reason, detail


class DataFormat(ABC):
    """The contract: ``convert(row, columns, image_root)`` maps one row (a dict of the table's columns)
    to ``{"query", "response_1", "response_2", "label" (1 or 2: the better as shown), "images" (a list
    of {"bytes", "path"})}``, or raises :class:`RowRejected`. ``columns`` maps egt's names to the table's
    (a source's ``columns``, over :data:`DEFAULT_COLUMNS`); ``image_root`` resolves relative image paths.
    Deterministic, no state between rows (rows are converted in several processes)."""

    name: ClassVar[str] = ""  # egt's own: the module's name
    id_column: ClassVar[str | None] = None  # the column that holds egt's sample id by default (else numbered)
    release_id: ClassVar[str | None] = None  # the release's own row id, kept in meta as ``source_id``

    @abstractmethod
    def convert(self, row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
        """One row's sample fields."""


def read_image(value: Any, image_root: str | None) -> dict[str, Any]:
    """One image as ``{"bytes", "path"}`` with its bytes read (so the artifact holds them)."""
    path = None
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(value, Mapping):
        if value.get("bytes"):
            data = value["bytes"]
        elif value.get("path"):
            return read_image(value["path"], image_root)
        else:
            raise RowRejected("images", "missing image", "an image entry with neither bytes nor path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and value.strip():
        data, path = _image_string(value, image_root)
    else:
        raise RowRejected("images", "missing image", f"an image of type {type(value).__name__}")
    why = check_image(data)
    if why is not None:
        raise RowRejected(
            "images", "unreadable image", why + (f"; from {_short(value)}" if isinstance(value, str) else "")
        )
    return {"bytes": data, "path": path}


def _image_string(value: str, image_root: str | None) -> tuple[bytes, str | None]:
    """The bytes (and file, if one) of an image string: a data URI or a long base64 payload is decoded
    before any filesystem call (R1-Reward-RL's ~165 kB strings are no file names: ``OSError: File name too
    long``), else a path (relative ones under ``image_root``), else short base64."""
    data = _inline(value)
    if data is not None:
        return data, None
    candidates = _candidates(value, image_root)
    try:
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is not None:
            return hit.read_bytes(), str(hit)
    except OSError as exc:  # not a usable path (too long, permissions, …): a bad row, never a crash
        raise RowRejected(
            "images", "missing image", f"{_short(value)} is not a readable file ({exc.strerror})"
        ) from None
    data = _base64(value)
    if data is None:
        raise RowRejected("images", "missing image", "no file at " + " or ".join(_short(str(c)) for c in candidates))
    return data, None


def _candidates(value: str, image_root: str | None) -> list[Path]:
    """Where an image path may be: as given if absolute; else under image_root; also its file name directly
    under image_root (a path on the authors' disk, or one with their folder prefix: "./data/coco/x.jpg")."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else []
    if image_root:
        root = Path(image_root).expanduser()
        candidates += ([] if path.is_absolute() else [root / value]) + [root / path.name]
    elif not path.is_absolute():
        candidates.append(path)
    return list(dict.fromkeys(candidates))


def _short(text: str, n: int = 80) -> str:
    """At most ``n`` characters of an image string for a message (a base64 image is ~165 kB, and messages
    reach the log and job.json)."""
    return text if len(text) <= n else f"{text[:n]}… ({len(text)} characters)"


_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_INLINE_MIN = 256  # a base64 string this long is no path (no dot, no extension, longer than a file name)


def _inline(value: str) -> bytes | None:
    """The bytes of an image given inline (a ``data:`` URI, or base64 of at least 256 characters); None
    for anything else. A data URI that is not a base64 image is a bad row."""
    text = value.strip()
    if text[:5].lower() == "data:":
        m = _DATA_URI.match(text)
        mime = (m.group(1) or "") if m else ""
        if m is None or not m.group(3) or not mime.lower().startswith("image/"):
            raise RowRejected("images", "unreadable image", f"a data URI that is not a base64 image ({_short(text)})")
        text = text[m.end() :]
    elif len(text) < _INLINE_MIN or not _BASE64.fullmatch(text):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise RowRejected("images", "unreadable image", f"not valid base64 ({exc}; {_short(text)})") from None


def _base64(text: str) -> bytes | None:
    """Short base64 image bytes (tried after no file was found), or None."""
    if len(text) < 64 or not _BASE64.fullmatch(text[:256]):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


def read_images(value: Any, image_root: str | None) -> list[dict[str, Any]]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or all(v is None for v in values):
        raise RowRejected("images", "missing image", "no image")
    return [read_image(v, image_root) for v in values]


def column(row: Mapping[str, Any], columns: Mapping[str, str], name: str, required: bool = True) -> Any:
    col = columns.get(name)
    if col is None or col not in row:
        if required:
            raise RowRejected(name, "missing column", f"no column {col!r} (data.sources columns.{name})")
        return None
    return row[col]


def nonempty(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RowRejected(field, "empty response", "empty, whitespace only, or not a string")
    return value


def turn_text(conversation: Any, roles: tuple[str, ...], field: str) -> str:
    for turn in conversation or []:
        if turn.get("from", turn.get("role")) in roles:
            value = turn.get("value")  # LLaVA's {from, value}, else {role, content}
            return content_text(turn.get("content") if value is None else value, field)
    raise RowRejected(field, "missing column", f"no {roles[0]} turn")


def content_text(content: Any, field: str) -> str:
    """A turn's text: a string as it is, or the text parts of a list of ``{type, text}`` parts joined
    (the newer arena export; image parts skipped, the image is its own column), never a Python repr."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, (list, tuple)) and all(isinstance(c, Mapping) and "type" in c for c in content):
        return "".join(str(c.get("text") or "") for c in content if c.get("type") == "text")
    raise RowRejected(
        field,
        "unreadable turn",
        f"a turn's content is a {type(content).__name__}, neither text nor a list of {{type, text}} parts",
    )
