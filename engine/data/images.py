"""Image files checked before use (complete, readable, of sane size), for a chat or a LLaVA dataset; PIL loads only inside."""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ChatError

MAX_PIXELS = 8192 * 8192  # 67 MP: more is a scan or a panorama, not a chat picture
MAX_BYTES = 100 << 20
DAMAGED = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
)  # what PIL raises on bad data
HEAD_BYTES = 512  # read to tell what a non-image file seems to be
MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x80\x02", "a Python pickle"),
    (b"<svg", "an SVG drawing (vector images are not supported)"),
    (b"<?xml", "an XML file"),
)


class ImageError(ChatError):
    """A path that cannot be used as an image; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A checked image file: resolved path, pixel size, PIL format name, bytes and change time."""

    path: Path
    width: int
    height: int
    format: str
    size_bytes: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        """What identifies this version of the file in caches: path, change time, size."""
        return str(self.path), self.mtime_ns, self.size_bytes


def _mib(size: int) -> str:
    """`size` bytes in MiB, one decimal."""
    return f"{size / (1 << 20):.1f} MiB"


def _looks_like(head: bytes) -> str:
    """What a file whose first bytes are `head` seems to be, or '' when unknown."""
    if not head:
        return "an empty file"
    stripped = head.lstrip()
    for magic, what in MAGIC:
        if stripped.startswith(magic):
            return what
    if stripped[:1] in (b"{", b"["):
        return "JSON or other text"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode("utf-8")  # the cut may split a character
        except UnicodeDecodeError:
            return ""
    if all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        return "text"
    return ""


def check_image(path: str | Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> ImageInfo:
    """Check that `path` is a readable, complete image of sane size; raise ImageError saying why not."""
    from PIL import Image, UnidentifiedImageError

    if not str(path).strip():
        raise ImageError("no image path given")
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageError(f"no such file: {path}") from None
    except OSError as exc:
        raise ImageError(f"cannot reach {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    if not path.is_file():
        raise ImageError(f"{path} is not a regular file")
    if stat.st_size > max_bytes:
        raise ImageError(f"{path} is too large: {_mib(stat.st_size)} (limit {_mib(max_bytes)})")
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except PermissionError:
        raise ImageError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
    resolved = path.resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(resolved) as im:
                width, height, fmt = im.width, im.height, im.format or "?"
                if width * height > max_pixels:
                    raise ImageError(f"{path} is too large: {width}x{height} pixels (limit {max_pixels / 1e6:.0f} MP)")
                im.verify()
            with Image.open(resolved) as im:
                im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(
                f"{path} is too large: over {Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP (a decompression bomb?)"
            ) from None
        except UnidentifiedImageError:
            what = _looks_like(head)
            raise ImageError(f"{path} is not an image" + (f": it looks like {what}" if what else "")) from None
        except DAMAGED as exc:
            raise ImageError(
                f"{path} is damaged or truncated: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
    return ImageInfo(resolved, width, height, fmt, stat.st_size, stat.st_mtime_ns)
