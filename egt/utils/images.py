"""One conversion of any PIL image to RGB: transparency composited onto white.

PIL's ``convert("RGB")`` drops the alpha channel, so the colour under a transparent pixel shows —
usually black, and black strokes on a transparent canvas become black on black. Qwen's own pipeline
(qwen-vl-utils ``to_rgb``) and vLLM composite onto white; every egt path that turns an image into
RGB (training, probe, eval, vLLM rollouts, the OpenAI-compatible teacher, decontamination) goes
through :func:`to_rgb`, so they all see what the model's own pipeline sees. RGB images are unchanged.
"""

from __future__ import annotations

from PIL import Image

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency: an alpha band, or a palette / grey transparency entry."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``image`` as RGB, transparent pixels composited onto ``background`` (white).

    >>> im = Image.new("RGBA", (2, 1), (0, 0, 0, 0)); im.putpixel((1, 0), (0, 0, 0, 255))
    >>> list(to_rgb(im).getdata()), list(im.convert("RGB").getdata())
    ([(255, 255, 255), (0, 0, 0)], [(0, 0, 0), (0, 0, 0)])
    """
    if not has_alpha(image):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")
