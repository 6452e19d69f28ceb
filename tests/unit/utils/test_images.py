"""Transparent images are composited onto white (as qwen-vl-utils' ``to_rgb`` and vLLM do) in every path
that turns an image into RGB: black strokes on a transparent canvas stay visible."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, ImageDraw

from egt.benchmarks.base import open_images
from egt.data.decontam import dhash
from egt.data.encode import _images
from egt.distill.openai_teacher import image_data_url
from egt.rl.vllm_backend import VLLMRollout

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def strokes(mode: str = "RGBA") -> Image.Image:
    """Black strokes on a fully transparent (black) canvas; ``mode`` LA / P keep the transparency."""
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(16, 0), (16, 31)], fill=(0, 0, 0, 255), width=3)
    if mode == "LA":
        return im.convert("LA")
    if mode == "P":
        p = Image.new("P", (32, 32), 0)
        p.putpalette([0, 0, 0, 0, 0, 0])  # index 0 transparent, index 1 opaque black
        ImageDraw.Draw(p).line([(16, 0), (16, 31)], fill=1, width=3)
        p.info["transparency"] = 0
        return p
    return im


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def corners(im: Image.Image) -> tuple:
    return im.mode, im.getpixel((0, 0)), im.getpixel((16, 16))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_every_path_composites_onto_white(mode):
    im = strokes(mode)
    want = ("RGB", WHITE, BLACK)
    assert corners(_images({"images": [im]})[0]) == want  # training / probe / eval encoder
    assert corners(open_images({"id": "x", "images": [png(im)]})[0]) == want  # benchmark files
    assert corners(open_images({"id": "x", "images": [im]})[0]) == want
    vllm = VLLMRollout.prompts(type("E", (), {"prompt_text": lambda self, s: "p"})(), [{"images": [im]}])
    assert corners(vllm[0]["multi_modal_data"]["image"]) == want  # vLLM rollouts
    url = image_data_url(im)  # a PIL image sent to an OpenAI-compatible teacher
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert corners(sent.convert("RGB")) == want


def test_rgb_images_are_unchanged_and_decontam_sees_the_white_composite():
    rgb = Image.new("RGB", (8, 8), (10, 200, 30))
    assert _images({"images": [rgb]})[0].tobytes() == rgb.tobytes()
    white = Image.new("RGB", (32, 32), WHITE)
    white.paste(strokes(), mask=strokes().split()[3])
    assert dhash(strokes()) == dhash(white)
