"""Real preference data onto egt's sample schema: any file or folder ``datasets`` reads, columns mapped.

A *source* is one table (``path``: a .jsonl / .json / .parquet file, a folder of them, a
``save_to_disk`` folder, or a Hub id when the machine has internet) and how to read it::

    {path: /data/rlaif_v.parquet, format: pairs, name: rlaif_v, image_root: /data/img,
     columns: {query: question, chosen: chosen, rejected: rejected, image: image}, limit: null}

Formats:

- ``pairs``: a query, two responses and which is better: ``chosen`` / ``rejected`` columns, or
  ``response_1`` / ``response_2`` + ``label`` (1 or 2, or "1"/"2"). Images as PIL images,
  ``{"bytes", "path"}`` dicts, raw bytes, or paths (relative ones resolved against ``image_root``),
  one or a list.
- ``r1_reward_rl``: R1-Reward's released RL set (``yifanzhang114/R1-Reward-RL``: ``question``,
  ``message`` (a JSON string: one user turn whose text holds the whole judge prompt and whose
  ``image`` entry holds a path on the authors' disk), ``answer`` (e.g. ``["<answer>2</answer>"]``),
  ``image`` (a string: base64 image bytes, a data URI, or a path)). The query and both responses are
  recovered from the prompt text (:func:`parse_r1_reward_prompt`), the label from ``answer``; the
  prompt is then re-rendered with egt's own template.
- the paper's SFT sources by name (``rlaif_v``, ``rlhf_v``, ``povid``, ``wildvision_battle``,
  ``vlfeedback``, ``mm_rlhf``): each release's own columns (see the converters).

Every row becomes ``id, images, query, response_1, response_2, label, category, source, meta``
(``meta`` records the file and row; for a folder also the shard file and the row in it). A bad row raises
:class:`SourceRowError` naming the file (the shard), the row in it, the id and the field, or, with
``on_bad_sample=skip``, is dropped and counted under its reason; rows excluded by design (:data:`EXCLUSIONS`)
are always dropped and counted apart. Reading the files: :mod:`egt.data.tables`.
Rows are converted with ``Dataset.map`` (Arrow-backed, written in batches), images embedded as
bytes, so memory does not grow with the number of rows.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import datasets
from PIL import Image

from egt.data.mixture import source_name
from egt.data.schema import FEATURES, check_image, row_location
from egt.data.tables import SourceFileError, Shards, load_table, read_table  # noqa: F401  (load_table: API)

log = logging.getLogger(__name__)

FORMATS = ("pairs", "r1_reward_rl", "rlaif_v", "rlhf_v", "povid", "wildvision_battle", "vlfeedback", "mm_rlhf")
DEFAULT_COLUMNS = {"id": "id", "query": "query", "chosen": "chosen", "rejected": "rejected",
                   "response_1": "response_1", "response_2": "response_2", "label": "label",
                   "image": "image", "images": "images", "category": "category"}
# reasons a row is bad (what a skip is counted under): they obey data.on_bad_sample
REASONS = ("missing column", "missing image", "unreadable image", "empty response", "identical responses",
           "label not derivable", "unparsable R1-Reward prompt", "unreadable turn")
# rows a release holds that are no single-turn image preference pair, by design: always dropped, counted apart
EXCLUSIONS = ("tie", "multi-turn", "video only", "no rated pair")
_ERROR = "_egt_error"
_FEATURES = datasets.Features({**FEATURES, _ERROR: datasets.Value("string")})


class SourceRowError(ValueError):
    """A row of an outside data set that cannot become a sample: names the file, row, id and field."""

    def __init__(self, file: str, row: int, sample_id: Any, field: str, reason: str, detail: str = "") -> None:
        self.file, self.row, self.sample_id, self.field, self.reason = file, row, sample_id, field, reason
        more = f" ({detail})" if detail else ""
        super().__init__(f"{file}: row {row} (id {sample_id!r}): field {field!r}: {reason}{more}. "
                         "Fix the row, map the column (data.sources.<split>[i].columns), or skip such rows "
                         "(data.on_bad_sample=skip)")


# ------------------------------------------------------------------ a source's key
def fingerprint(path: str, image_root: str | None = None, sample_bytes: int = 1 << 16) -> str:
    """A content fingerprint of a source for artifact keys: :func:`egt.artifacts.content_fingerprint` of
    its file or folder (names, sizes, sampled bytes), and the names and sizes of the files under
    ``image_root``. A Hub id is fingerprinted by name (no network here to ask for its revision)."""
    from egt.artifacts import content_fingerprint

    h = hashlib.sha256()
    p = Path(path).expanduser()
    h.update((content_fingerprint(p, sample_bytes) if p.exists() else f"hub:{path}").encode())
    if image_root and Path(image_root).expanduser().is_dir():
        root = Path(image_root).expanduser()
        for entry in sorted(_walk(root)):
            h.update(entry.encode())
    return h.hexdigest()[:16]


def _walk(root: Path):
    for dirpath, _, names in os.walk(root):
        for n in names:
            f = Path(dirpath) / n
            yield f"{f.relative_to(root)}\0{f.stat().st_size}"


# ------------------------------------------------------------------ R1-Reward prompts
_MARK = r"(?:^|\n)[ \t]*#*[ \t]*\[{}\][ \t]*:?[ \t]*\n"
_Q, _R1, _R2 = (re.compile(_MARK.format(re.escape(m))) for m in ("Question", "Response 1", "Response 2"))
_END = re.compile(r"\n[ \t]*#*[ \t]*\*\*Output Format")


def parse_r1_reward_prompt(text: str) -> tuple[str, str, str]:
    """(question, response 1, response 2) from an R1-Reward judge prompt.

    The prompt marks its parts with lines ``[Question]``, ``[Response 1]``, ``[Response 2]`` (with
    or without leading ``#``s and a colon, as in the released inference prompt ``###### [Question]:``)
    and ends with ``**Output Format`` or the text's end; trailing spaces are stripped from each part.
    A marker line that occurs more than once (a response that quotes one) makes the split
    ambiguous: ValueError, never a guess.

    >>> t = ("Compare.\\n\\n###### **Input:**  \\n###### [Question]:\\nHow many?  \\n\\n"
    ...      "###### [Response 1]:\\nTwo.  \\n\\n###### [Response 2]:\\nThree.  \\n\\n"
    ...      "###### **Output Format (strictly follow):**  \\n<think>…</think><answer>1/2</answer>")
    >>> parse_r1_reward_prompt(t)
    ('How many?', 'Two.', 'Three.')
    """
    found = [list(m.finditer(text)) for m in (_Q, _R1, _R2)]
    for name, hits in zip(("[Question]", "[Response 1]", "[Response 2]"), found):
        if len(hits) != 1:
            raise ValueError(f"the marker line {name} occurs {len(hits)} times (expected once)")
    q, r1, r2 = (hits[0] for hits in found)
    if not (q.end() <= r1.start() and r1.end() <= r2.start()):
        raise ValueError("the markers [Question], [Response 1], [Response 2] are out of order")
    end = _END.search(text, r2.end())
    parts = (text[q.end():r1.start()], text[r1.end():r2.start()], text[r2.end():end.start() if end else len(text)])
    return tuple(p.strip() for p in parts)  # type: ignore[return-value]


def _words(text: str) -> str:
    """Whitespace-normalised text without LLaVA's ``<image>`` placeholder (compared, never kept)."""
    return " ".join(text.replace("<image>", " ").split())


def r1_reward_label(answer: Any) -> int | None:
    """1 or 2 from R1-Reward's ``answer`` (``["<answer>2</answer>"]``, "2", 2, …); None if not derivable.

    >>> r1_reward_label(["<answer>2</answer>"]), r1_reward_label("1"), r1_reward_label(["<answer>3</answer>"])
    (2, 1, None)
    """
    if isinstance(answer, (list, tuple)):
        labels = {r1_reward_label(a) for a in answer}
        return labels.pop() if len(labels) == 1 else None
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if answer in (1, 2) else None
    if isinstance(answer, str):
        m = re.fullmatch(r"\s*(?:<answer>\s*)?([12])\s*(?:</answer>)?\s*", answer)
        return int(m.group(1)) if m else None
    return None


# ------------------------------------------------------------------ one row
class _Bad(Exception):
    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        self.field, self.reason, self.detail = field, reason, detail


def _image(value: Any, image_root: str | None) -> dict[str, Any]:
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
            return _image(value["path"], image_root)
        else:
            raise _Bad("images", "missing image", "an image entry with neither bytes nor path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and value.strip():
        data, path = _image_string(value, image_root)
    else:
        raise _Bad("images", "missing image", f"an image of type {type(value).__name__}")
    why = check_image(data)
    if why is not None:
        raise _Bad("images", "unreadable image", why + (f"; from {_short(value)}" if isinstance(value, str) else ""))
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
        raise _Bad("images", "missing image", f"{_short(value)} is not a readable file ({exc.strerror})") from None
    data = _base64(value)
    if data is None:
        raise _Bad("images", "missing image", "no file at " + " or ".join(_short(str(c)) for c in candidates))
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
            raise _Bad("images", "unreadable image", f"a data URI that is not a base64 image ({_short(text)})")
        text = text[m.end():]
    elif len(text) < _INLINE_MIN or not _BASE64.fullmatch(text):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise _Bad("images", "unreadable image", f"not valid base64 ({exc}; {_short(text)})") from None


def _base64(text: str) -> bytes | None:
    """Short base64 image bytes (tried after no file was found), or None."""
    if len(text) < 64 or not _BASE64.fullmatch(text[:256]):
        return None
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


def _images(value: Any, image_root: str | None) -> list[dict[str, Any]]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or all(v is None for v in values):
        raise _Bad("images", "missing image", "no image")
    return [_image(v, image_root) for v in values]


def _col(row: Mapping[str, Any], columns: Mapping[str, str], name: str, required: bool = True) -> Any:
    col = columns.get(name)
    if col is None or col not in row:
        if required:
            raise _Bad(name, "missing column", f"no column {col!r} (data.sources columns.{name})")
        return None
    return row[col]


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(field, "empty response", "empty, whitespace only, or not a string")
    return value


def convert_pairs(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """One ``pairs`` row → schema fields (label 1 = response_1 is better). Raises _Bad."""
    query = _col(row, columns, "query")
    if not isinstance(query, str) or not query.strip():
        raise _Bad("query", "empty response", "the query is empty")
    chosen, rejected = row.get(columns.get("chosen") or ""), row.get(columns.get("rejected") or "")
    if chosen is not None or rejected is not None:  # (a JSON-lines file gives absent keys as None)
        r1, r2, label = chosen, rejected, 1
    else:
        r1, r2 = _col(row, columns, "response_1"), _col(row, columns, "response_2")
        label = r1_reward_label(_col(row, columns, "label"))
        if label is None:
            raise _Bad("label", "label not derivable", f"got {_col(row, columns, 'label')!r}")
    image = _col(row, columns, "images", required=False)
    if image is None:
        image = _col(row, columns, "image")
    return {"query": query, "response_1": _text(r1, "response_1"), "response_2": _text(r2, "response_2"),
            "label": label, "images": _images(image, image_root)}


def convert_r1_reward_rl(row: Mapping[str, Any], columns: Mapping[str, str],
                         image_root: str | None) -> dict[str, Any]:
    """One R1-Reward-RL row → schema fields. Raises _Bad."""
    raw = row.get("message")
    if raw is None:
        raise _Bad("message", "missing column", "no column 'message'")
    try:
        turns = json.loads(raw) if isinstance(raw, str) else raw
        content = turns[0]["content"]
        if isinstance(content, str):  # a text-only turn (OpenAI style): the image is in the image column
            content = [{"type": "text", "text": content}]
        text = "".join(c.get("text", "") for c in content if c.get("type") == "text")
        paths = [c.get("image") for c in content if c.get("type") == "image"]
        query, r1, r2 = parse_r1_reward_prompt(text)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _Bad("message", "unparsable R1-Reward prompt", str(exc)) from None
    question = row.get("question")
    if isinstance(question, str) and question.strip() and _words(question) != _words(query):
        raise _Bad("message", "unparsable R1-Reward prompt", "its [Question] differs from the question column")
    label = r1_reward_label(row.get("answer"))
    if label is None:
        raise _Bad("answer", "label not derivable", f"got {row.get('answer')!r}")
    image = row.get("image")
    images = _images(image, image_root) if image else _images(paths or None, image_root)
    return {"query": query, "response_1": _text(r1, "response_1"), "response_2": _text(r2, "response_2"),
            "label": label, "images": images}


# ------------------------------------------------------------------ the paper's SFT sources (§3.1)
# Layouts as verified from the releases' cards and the code that reads them (sources per format in
# tests/fixtures/README.md); each converter raises _Bad for a row that is not one preference pair.
def convert_rlaif_v(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """openbmb/RLAIF-V-Dataset: question, chosen, rejected, image (Image feature; {bytes, path} in the parquet)."""
    return convert_pairs(row, {**columns, "query": "question"}, image_root)


def convert_rlhf_v(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """openbmb/RLHF-V-Dataset: ``text`` is a JSON string {question, chosen, rejected}; image (Image)."""
    try:
        text = json.loads(row["text"]) if isinstance(row["text"], str) else row["text"]
        fields = {"query": text["question"], "chosen": text["chosen"], "rejected": text["rejected"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise _Bad("text", "missing column", f"not a JSON object with question/chosen/rejected ({exc})") from None
    return convert_pairs({**fields, "image": row.get("image")}, DEFAULT_COLUMNS, image_root)


def _turn(conversation: Any, roles: tuple[str, ...], field: str) -> str:
    for turn in conversation or []:
        if turn.get("from", turn.get("role")) in roles:
            value = turn.get("value")  # LLaVA's {from, value}, else {role, content}
            return _content_text(turn.get("content") if value is None else value, field)
    raise _Bad(field, "missing column", f"no {roles[0]} turn")


def _content_text(content: Any, field: str) -> str:
    """A turn's text: a string as it is, or the text parts of a list of ``{type, text}`` parts joined
    (the newer arena export; image parts skipped, the image is its own column), never a Python repr."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, (list, tuple)) and all(isinstance(c, Mapping) and "type" in c for c in content):
        return "".join(str(c.get("text") or "") for c in content if c.get("type") == "text")
    raise _Bad(field, "unreadable turn", f"a turn's content is a {type(content).__name__}, neither text nor a "
                                         "list of {type, text} parts")


def convert_povid(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """POVID (a JSON list of LLaVA conversations): ``conversations`` [{from: human, value: "<image>\\n…"},
    {from: gpt, value: chosen}], ``rejected_conversations`` likewise with the rejected answer; ``image`` a
    COCO train2014 file name, joined to the image folder as POVID's train_dpo.py does (a path with the
    authors' folder prefix, "./data/coco/…", is also found by its file name under image_root)."""
    query = _turn(row.get("conversations"), ("human", "user"), "conversations").replace("<image>", "").strip()
    chosen = _turn(row.get("conversations"), ("gpt", "assistant"), "conversations")
    rejected = _turn(row.get("rejected_conversations"), ("gpt", "assistant"), "rejected_conversations")
    return convert_pairs({"query": query, "chosen": chosen, "rejected": rejected, "image": row.get("image")},
                         DEFAULT_COLUMNS, image_root)


def convert_wildvision_battle(row: Mapping[str, Any], columns: Mapping[str, str],
                              image_root: str | None) -> dict[str, Any]:
    """WildVision arena battles: conversation_a / conversation_b ([{role, content}]), winner in model_a |
    model_b | tie | "tie (bothbad)" (ties and both-bad are dropped, counted under "tie"), image (Image);
    battles of more than one turn (``turn``, else the user turns of conversation_a) are dropped
    ("multi-turn")."""
    winner = str(row.get("winner") or "")
    if winner.startswith("tie"):
        raise _Bad("winner", "tie", winner)
    if winner not in ("model_a", "model_b"):
        raise _Bad("winner", "label not derivable", f"got {winner!r}")
    turns = row.get("turn") or sum(t.get("role") == "user" for t in row.get("conversation_a") or []) or 1
    if int(turns) > 1:
        raise _Bad("conversation_a", "multi-turn", f"{turns} turns")
    a, b = row.get("conversation_a"), row.get("conversation_b")
    return convert_pairs({"query": _turn(a, ("user",), "conversation_a"),
                          "response_1": _turn(a, ("assistant",), "conversation_a"),
                          "response_2": _turn(b, ("assistant",), "conversation_b"),
                          "label": 1 if winner == "model_a" else 2, "image": row.get("image")},
                         {**DEFAULT_COLUMNS, "chosen": None, "rejected": None}, image_root)


def _rating(annotation: Any) -> float | None:
    try:
        return float(annotation["Rating"])
    except (KeyError, TypeError, ValueError):
        return None


def convert_vlfeedback(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None,
                       pair_rule: str = "best_worst") -> dict[str, Any]:
    """MMInstruction/VLFeedback: ``completions`` (a list of {model, response, annotations}; the loading
    script's Sequence of dicts gives the same as a dict of lists), each annotated with Helpfulness, Ethical
    Considerations and Visual Faithfulness ratings. The image: ``img_path`` where the loading script set it,
    else ``<id>.jpg`` under image_root (the released vlfeedback_80k.jsonl has no image column; its images
    are merged_images/<id>.jpg in merged_images.zip). A completion's score is the mean of its three ratings
    (as the authors' run_dpo.py; a completion with a rating that is not a number is left out).
    ``pair_rule``: best_worst = the highest against the lowest score (one pair per prompt; none if they tie)."""
    for column in ("prompt", "completions"):  # a file without the column: say so, never "empty response"
        if column not in row:  # or an exclusion ("no rated pair")
            raise _Bad(column, "missing column", f"no column {column!r}")
    comps = row.get("completions")
    if isinstance(comps, Mapping):  # the loading script's Sequence of dicts: a dict of lists
        comps = [dict(zip(comps, vals)) for vals in zip(*comps.values())]
    scored = []
    for c in comps or []:
        ratings = [_rating(a) for a in (c.get("annotations") or {}).values()]
        if ratings and all(r is not None for r in ratings):
            scored.append((sum(ratings) / len(ratings), str(c.get("response") or "")))
    if pair_rule != "best_worst":
        raise ValueError(f"vlfeedback pair_rule={pair_rule!r}: only best_worst is implemented")
    scored.sort(key=lambda s: s[0])
    if len(scored) < 2 or scored[0][0] == scored[-1][0]:
        raise _Bad("completions", "no rated pair", f"{len(scored)} completions with numeric ratings, no better one")
    image = row.get("img_path") or row.get("image") or (f"{row['id']}.jpg" if row.get("id") else None)
    return convert_pairs({"query": row.get("prompt"), "chosen": scored[-1][1], "rejected": scored[0][1],
                          "image": image}, DEFAULT_COLUMNS, image_root)


def convert_mm_rlhf(row: Mapping[str, Any], columns: Mapping[str, str], image_root: str | None) -> dict[str, Any]:
    """MM-RLHF's ranked pairs (``dpo_pairs.jsonl``: prompt, chosen, rejected, and image, a path relative to
    the release's root such as "mcq/….png", or video, a folder of frames); video rows are dropped ("video
    only": egt's judges read images)."""
    if not row.get("image") and row.get("video"):
        raise _Bad("video", "video only", str(row.get("video")))
    return convert_pairs(row, {**columns, "query": "prompt"}, image_root)


CONVERTERS = {"pairs": convert_pairs, "r1_reward_rl": convert_r1_reward_rl, "rlaif_v": convert_rlaif_v,
              "rlhf_v": convert_rlhf_v, "povid": convert_povid, "wildvision_battle": convert_wildvision_battle,
              "vlfeedback": convert_vlfeedback, "mm_rlhf": convert_mm_rlhf}


# ------------------------------------------------------------------ one source
# The releases' own row ids, kept in ``meta`` as ``source_id``: never egt's sample id, because they repeat
# (MM-RLHF's dpo_pairs.jsonl holds several pairs per instruction id; POVID's ids are COCO image ids), and
# egt keys distillation, probing and selection by sample id. Those rows are numbered instead.
RELEASE_IDS = {"rlaif_v": "idx", "rlhf_v": "idx", "povid": "id", "wildvision_battle": "question_id",
               "vlfeedback": "id", "mm_rlhf": "id"}


def _check_unique_ids(ids: list[str], metas: list[str], id_col: str | None) -> None:
    """A sample id that occurs twice is an error naming both rows' file (shard) and row."""
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise ValueError(f"{row_location(metas[i])}: sample id {sid!r} (column {id_col!r}) occurs again, first at "
                             f"{row_location(metas[seen[sid]])}; egt keys its stages by sample id. Map a unique column "
                             "(columns.id) or number the rows (columns: {id: null})")
        seen[sid] = i


def load_source(spec: Mapping[str, Any], split: str, on_bad_sample: str = "error",
                image_root: str | None = None, num_proc: int = 1) -> tuple[datasets.Dataset, dict[str, Any]]:
    """One source's rows on egt's schema, and its counts
    ``{"rows", "kept", "excluded": {reason: n}, "skipped": {reason: n}}``.

    Rows excluded by design (:data:`EXCLUSIONS`: ties, multi-turn battles, video rows, prompts without a
    rated pair) are always dropped and counted under ``excluded``. Raises :class:`SourceRowError` for the
    first bad row (:data:`REASONS`) unless ``on_bad_sample="skip"`` (then counted under ``skipped``). ``num_proc``
    processes convert contiguous shards of the rows (``Dataset.map``); the result is the same rows in
    the same order as with one.
    """
    path = str(spec["path"])
    fmt = spec.get("format", "pairs")
    if fmt not in CONVERTERS:
        raise ValueError(f"data source {path}: format={fmt!r} is not one of {list(FORMATS)}")
    name = source_name(spec)
    root = spec.get("image_root") or image_root
    columns = {**DEFAULT_COLUMNS, **(spec.get("columns") or {})}
    table, shards = read_table(path, spec.get("split"), num_proc)
    procs = {"num_proc": min(num_proc, len(table))} if num_proc > 1 and len(table) > 1 else {}
    if spec.get("limit"):
        table = table.select(range(min(int(spec["limit"]), len(table))))
    convert, category = CONVERTERS[fmt], spec.get("category")
    if fmt == "vlfeedback":
        convert = functools.partial(convert_vlfeedback, pair_rule=spec.get("pair_rule", "best_worst"))

    id_col = (spec.get("columns") or {}).get("id", "id" if fmt == "pairs" else None)
    shard_of = _shard_locator(path, shards)

    def one(row: dict[str, Any], idx: int) -> dict[str, Any]:
        sid = row.get(id_col) if id_col in row else None
        sid = str(sid) if sid not in (None, "") else f"{name}-{split}-{idx:08d}"
        meta = {"file": path, "row": idx, **shard_of(idx)}  # a single file's meta as it always was
        if row.get(RELEASE_IDS.get(fmt, "")) not in (None, ""):
            meta["source_id"] = str(row[RELEASE_IDS[fmt]])
        out = {"id": sid, "images": [], "query": "", "response_1": "", "response_2": "", "label": 1,
               "category": str(row.get(columns["category"]) or category or name) if columns.get("category") in row
               else str(category or name), "source": name, "meta": json.dumps(meta), _ERROR: ""}
        try:
            fields = convert(row, columns, root)
            if " ".join(fields["response_1"].split()) == " ".join(fields["response_2"].split()):
                raise _Bad("response_2", "identical responses", "both responses are the same text")
            out.update(fields)
        except _Bad as bad:
            out[_ERROR] = json.dumps([bad.field, bad.reason, bad.detail])
        return out

    converted = table.map(one, with_indices=True, remove_columns=table.column_names, features=_FEATURES,
                          desc=f"[data] {name} ({split})", load_from_cache_file=False, **procs)
    excluded, skipped = _drop_failed(converted, path, on_bad_sample)
    if excluded or skipped:
        converted = converted.filter(lambda e: e == "", input_columns=[_ERROR], load_from_cache_file=False)
        (log.warning if skipped else log.info)("[data] %s (%s): of %d rows, excluded by design %s, skipped as "
                                               "bad %s", name, split, len(table), dict(excluded), dict(skipped))
    converted = converted.remove_columns(_ERROR).cast(FEATURES)
    _check_unique_ids(converted["id"], converted["meta"], id_col)
    return converted, {"rows": len(table), "kept": len(converted), "excluded": dict(excluded),
                       "skipped": dict(skipped)}


def _drop_failed(converted: datasets.Dataset, path: str, on_bad_sample: str) -> tuple[Counter[str], Counter[str]]:
    """The rows that did not convert, counted by reason: (excluded by design, skipped as bad). Raises
    :class:`SourceRowError` for the first bad row unless ``on_bad_sample="skip"``; exclusions never raise."""
    errors = converted.filter(lambda e: e != "", input_columns=[_ERROR], load_from_cache_file=False)
    excluded: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    first_bad = None
    for i, e in enumerate(errors[_ERROR] if len(errors) else []):
        reason = json.loads(e)[1]
        if reason in EXCLUSIONS:
            excluded[reason] += 1
        else:
            skipped[reason] += 1
            first_bad = i if first_bad is None else first_bad
    if first_bad is not None and on_bad_sample != "skip":
        row = errors[first_bad]
        field, reason, detail = json.loads(row[_ERROR])
        meta = json.loads(row["meta"])
        file = os.path.join(path, meta["shard"]) if "shard" in meta else path
        raise SourceRowError(file, meta.get("shard_row", meta["row"]), meta.get("source_id", row["id"]), field,
                             reason, detail)
    return excluded, skipped


def _shard_locator(path: str, shards: Shards | None):
    """``idx -> {"shard": file relative to the folder, "shard_row": row in it}`` for a folder of files;
    ``{}`` for a single file (its meta stays ``{"file", "row"}``, byte for byte as before)."""
    if not shards:
        return lambda idx: {}
    starts = [0]
    for _, n in shards:
        starts.append(starts[-1] + n)
    names = [os.path.relpath(f, path) for f, _ in shards]

    def locate(idx: int) -> dict[str, Any]:
        k = bisect.bisect_right(starts, idx) - 1
        return {"shard": names[k], "shard_row": idx - starts[k]}

    return locate


def build_split(specs: list[Mapping[str, Any]], split: str, on_bad_sample: str,
                image_root: str | None, num_proc: int = 1) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Every source of one split, concatenated in order; per-source counts."""
    parts, counts = [], {}
    for spec in specs:
        ds, c = load_source(spec, split, on_bad_sample, image_root, num_proc)
        counts[source_name(spec)] = c
        parts.append(ds)
    if not parts:
        return datasets.Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES), counts
    return (datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]), counts
