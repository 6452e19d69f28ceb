"""Models: build a tiny Qwen2.5-VL offline, load any local HF VLM directory.

Importing this package registers ``EgtQwen2_5_VLProcessor`` with ``AutoProcessor``.
"""

from egt.models.builder import TinyVLMSpec, build_tiny_vlm, default_corpus
from egt.models.loader import load_model, load_model_and_processor, load_processor, multimodal_token_ids
from egt.models.processor import EgtQwen2_5_VLProcessor

__all__ = [
    "EgtQwen2_5_VLProcessor",
    "TinyVLMSpec",
    "build_tiny_vlm",
    "default_corpus",
    "load_model",
    "load_model_and_processor",
    "load_processor",
    "multimodal_token_ids",
]
