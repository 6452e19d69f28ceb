"""A Qwen2.5-VL processor that works without torchvision (images only, PIL backend).

The stock ``Qwen2_5_VLProcessor`` needs a video processor, and every video processor
in transformers 5.x needs torchvision, which cannot be installed next to the CPU torch
wheel. :class:`EgtQwen2_5_VLProcessor` is the same processor minus the video part.

It saves itself under the stock name ``Qwen2_5_VLProcessor`` (as a real checkpoint's configs
read), and ``egt.models.loader.load_processor`` maps that name back to this class where the stock
one cannot be built (no torchvision, or no video processor config in the directory). Importing
this module also registers the class with ``AutoProcessor`` under a private key, so directories
saved by egt before 2026-11-29 (whose configs name ``EgtQwen2_5_VLProcessor``) still load.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from transformers import AutoProcessor
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

# Qwen2.5-VL's vision geometry: 14 px patches, 2×2 spatial merge, 2-frame temporal patches.
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
_REGISTRY_KEY = "egt_qwen2_5_vl_processor"


def torchvision_available() -> bool:
    """Whether torchvision can really be imported (a CUDA-only build fails on import)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # a broken build raises RuntimeError / OSError, not ImportError
        return False
    return True


class EgtQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without a video processor: images + text only."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        # Skip Qwen2_5_VLProcessor.__init__: it passes a video_processor positionally.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """Save as the stock ``Qwen2_5_VLProcessor`` (its name in every saved config), so a judge egt
        trained loads wherever a real Qwen2.5-VL checkpoint does, without egt; egt's own loader maps
        the stock name back to this class when torchvision is missing."""
        out = super().save_pretrained(save_directory, *args, **kwargs)
        for f in Path(save_directory).glob("*.json"):
            text = f.read_text(encoding="utf-8")
            if f'"{type(self).__name__}"' in text:
                data = json.loads(text)
                _rename_processor_class(data, type(self).__name__, STOCK_NAME)
                f.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _add_video_processor(Path(save_directory))
        return out


def video_processor_dict(image_processor: dict[str, Any]) -> dict[str, Any]:
    """The stock ``Qwen2VLVideoProcessor`` config that transformers itself derives from a Qwen2-VL image
    processor config when a checkpoint ships none (``AutoVideoProcessor``'s fallback: same geometry,
    pixel budget, mean/std and resampling, ``*ImageProcessor*`` renamed ``*VideoProcessor*``), written
    out so that plain transformers loads an egt-saved judge without that guess."""
    video = {k: v for k, v in image_processor.items() if k not in ("image_processor_type", "processor_class")}
    video["video_processor_type"] = "Qwen2VLVideoProcessor"
    video.setdefault("do_sample_frames", False)  # the stock class's default (kept explicit for vLLM)
    return video


def _add_video_processor(directory: Path) -> None:
    """Give a saved processor the video processor the stock ``Qwen2_5_VLProcessor`` needs: a
    ``video_processor`` entry in the nested ``processor_config.json`` (transformers 5.x layout) or a
    ``video_preprocessor_config.json`` beside a flat ``preprocessor_config.json`` (4.x layout)."""
    nested, flat = directory / "processor_config.json", directory / "preprocessor_config.json"
    if nested.is_file():
        data = json.loads(nested.read_text(encoding="utf-8"))
        if "image_processor" in data and "video_processor" not in data:
            data["video_processor"] = video_processor_dict(data["image_processor"])
            nested.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            return
    target = directory / "video_preprocessor_config.json"
    if flat.is_file() and not target.is_file():
        data = json.loads(flat.read_text(encoding="utf-8"))
        target.write_text(json.dumps(video_processor_dict(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def has_video_processor_config(directory: Path) -> bool:
    """Whether the stock processor finds a video processor config in ``directory`` (a
    ``video_processor`` entry in ``processor_config.json`` or ``video_preprocessor_config.json``).
    A real Qwen2.5-VL download with only ``preprocessor_config.json`` counts too: transformers derives
    the video processor from it."""
    nested = directory / "processor_config.json"
    if nested.is_file() and "video_processor" in json.loads(nested.read_text(encoding="utf-8")):
        return True
    return (directory / "video_preprocessor_config.json").is_file() or (
        directory / "preprocessor_config.json"
    ).is_file()


STOCK_NAME = "Qwen2_5_VLProcessor"


def _rename_processor_class(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "processor_class" and v == old:
                node[k] = new
            else:
                _rename_processor_class(v, old, new)
    elif isinstance(node, list):
        for v in node:
            _rename_processor_class(v, old, new)


def make_image_processor(min_pixels: int, max_pixels: int) -> Any:
    """A PIL-backend Qwen2-VL image processor (no torchvision) with the given pixel budget."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


def register() -> None:
    """Make ``AutoProcessor`` resolve ``EgtQwen2_5_VLProcessor`` by name (idempotent)."""
    AutoProcessor.register(_REGISTRY_KEY, EgtQwen2_5_VLProcessor, exist_ok=True)


register()
