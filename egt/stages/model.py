"""model stage: the base model directory SFT starts from.

- ``model.path`` set: that local HF directory, as it is (nothing is copied). It is identified by its
  content (``egt.artifacts.content_fingerprint``), so a different checkpoint at the same path changes
  every downstream key.
- otherwise: a random Qwen2.5-VL of the shape ``model.build`` gives, built offline once through the
  artifact store (``<artifacts>/models/<key>/model``) and from then on loaded like any checkpoint. Kind
  ``world`` (tiny/demo) trains its BPE on egt.models.corpus; kind ``qwen2_5_vl_replica`` writes the files of
  a Qwen2.5-VL-7B-Instruct download around the real Qwen2.5 tokenizer (egt.models.replica).

Returns ``{"key", "path", "reused", "summary", "model_path", "identity"}``: ``model_path`` is the directory
to ``from_pretrained``; ``identity`` is what goes into the SFT key.

Raises:
    FileNotFoundError: ``model.path`` names no directory.
    ValueError: ``model.build.kind`` is unknown.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from egt.artifacts import content_fingerprint, make_key
from egt.utils.conf import to_container

log = logging.getLogger(__name__)
REQUIRES = ()  # the stages this one may ask the pipeline for (egt.stages)
BUILD_VERSION = 6  # 2: the tokenizer corpus holds the compact teacher style too; 3: untied embeddings;
#                    4: and scene descriptions (distill.teacher.describe); 5: Qwen's default system message;
#                    6: egt's own BPE trainer (ties broken by the pair, the same in every process)
CORPUS_LINES = 4000
BUILD_KINDS = ("world", "qwen2_5_vl_replica")
REPLICA_VERSION = 1  # egt.models.replica's files
STORE = "models"  # the artifact store's directory for built models (its name predates the stage)


def unused(cfg: DictConfig) -> str | None:
    """Why the pipeline skips this stage in a run that lists it (egt.pipeline.Pipeline.run): SFT, which
    starts from this model, is replaced by ``sft.model_path``, and the eval stage does not evaluate it
    (``eval.models`` without ``model``). None: it runs."""
    evaluated = "eval" in cfg.stages and "model" in (cfg.eval.models or []) and not cfg.eval.model_path
    if cfg.sft.model_path and "sft" in cfg.stages and not evaluated:
        return "sft.model_path is set, so SFT does not start from this model, and eval.models does not name it"
    return None


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    if cfg.model.path:
        path = Path(cfg.model.path).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model.path={cfg.model.path}: no such directory (a local HF model directory "
                f"with config.json; unset model.path to build the {cfg.model.name!r} model)"
            )
        identity = {"path": str(path), "content": content_fingerprint(path)}
        log.info("[model] %s (checkpoint, content %s)", path, identity["content"][:12])
        return {
            "key": f"external-{identity['content']}",
            "path": str(path),
            "reused": True,
            "summary": {"source": "model.path", "name": cfg.model.name},
            "model_path": str(path),
            "identity": identity,
        }
    from egt.models.builder import TinyVLMSpec

    build = to_container(cfg.model.build)
    kind = build.pop("kind", "world")
    if kind not in BUILD_KINDS:
        raise ValueError(f"model.build.kind={kind!r} is not one of {list(BUILD_KINDS)}")
    what = {"name": cfg.model.name, "build": build, "corpus_lines": CORPUS_LINES}
    if kind != "world":  # the world kind's keys stay what they were before kinds existed
        what = {"name": cfg.model.name, "build": build, "kind": kind, "replica_version": REPLICA_VERSION}
    key = make_key(STORE, what, version=BUILD_VERSION)
    with pipe.store.open(STORE, key) as art:
        if not art.reused:
            if kind == "qwen2_5_vl_replica":
                from egt.models.replica import build_qwen2_5_vl_replica

                build_qwen2_5_vl_replica(art.path / "model", TinyVLMSpec(**build))
            else:
                from egt.data.world import WorldConfig
                from egt.models.builder import build_tiny_vlm
                from egt.models.corpus import world_corpus

                build_tiny_vlm(
                    art.path / "model", TinyVLMSpec(**build), world_corpus(WorldConfig(seed=0), n=CORPUS_LINES)
                )
            from egt.models.resolve import load_configured

            n_params = sum(p.numel() for p in load_configured(art.path / "model", cfg).parameters())
            art.finish({"name": cfg.model.name, "kind": kind, "parameters": n_params})
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "model_path": str(art.path / "model"),
        "identity": {"built": art.path.name},
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary)."""
    s = summary
    size = f", {s['parameters'] / 1e6:.1f}M parameters" if "parameters" in s else ""
    return f"{s.get('name', '?')} ({'checkpoint' if s.get('source') == 'model.path' else 'built offline'}){size}"
