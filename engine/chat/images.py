"""Image files for LLaVA chat: a path as the user typed it, loaded as RGB once checked; PIL loads only inside the functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from engine.data.images import DAMAGED, MAX_BYTES, ImageError, ImageInfo, check_image

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["IMAGE_SUFFIXES", "MAX_BYTES", "ImageError", "ImageInfo", "check_image", "expand_user_path", "load_rgb"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # what a path picker offers


def expand_user_path(text: str, cwd: str | Path | None = None) -> Path:
    """The path a user typed or pasted: quotes and file:// stripped, ~ expanded, relative to `cwd`."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(cwd or Path.cwd()) / path


def load_rgb(info: ImageInfo, max_side: int | None = None, background: tuple[int, int, int] = (255, 255, 255)) -> Image:
    """The image as loaded RGB, turned upright per EXIF, transparency over `background`, shrunk to `max_side` if given."""
    from PIL import Image, ImageOps

    try:
        with Image.open(info.path) as im:
            if max_side and max(im.size) > max_side:  # JPEG then decodes at a smaller scale: much faster for photos
                scale = max_side / max(im.size)
                im.draft("RGB", (round(im.width * scale), round(im.height * scale)))
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.new("RGB", rgba.size, background)
                im.paste(rgba, mask=rgba.getchannel("A"))
            elif im.mode != "RGB":
                im = im.convert("RGB")
    except DAMAGED as exc:  # the file changed or broke since it was checked
        raise ImageError(f"{info.path} could not be loaded: {exc}") from None
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BOX)  # area average: fast and fine for a shrink
    return im
