"""An image in the terminal, scaled to fit: our own half-block renderer, or kitty graphics / sixel where the terminal has them."""

from __future__ import annotations

import os
import re
import sys
import termios
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import on, work
from textual.content import Content
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from engine.chat.images import ImageError, ImageInfo, check_image, load_rgb
from engine.locations import IMAGE_MODE_ENV

if TYPE_CHECKING:
    from PIL.Image import Image

Mode = Literal["halfblock", "kitty", "sixel"]
MODES: tuple[Mode, ...] = ("halfblock", "kitty", "sixel")
MAX_SIDE = 2048  # pixels kept per image: more than any terminal shows
UPPER_HALF = "▀"
KITTY_PLACEHOLDERS = (0, 28)  # the first kitty that draws images through Unicode placeholders (textual-image's way)
XTVERSION_REPLY = "\x1bP>|"  # the terminal's answer to CSI > 0 q: DCS > | name(version) ST
SIXEL_COLOR = re.compile(r"#(\d+);([12]);(\d+);(\d+);(\d+)")  # a colour register's definition: #N;space;a;b;c
SIXEL_NO_OP = re.compile(r"#\d+(?=#)")  # a register chosen and left unused
SIXEL_RASTER = re.compile(r'"\d+;\d+(?:;\d+;\d+)?')  # raster attributes, right after the DCS ... q

_detected: Mode | None = None


def detect_graphics() -> Mode:
    """Choose the image mode once, before the app starts (only then can the terminal be asked): env, tmux, then the terminal's answer."""
    global _detected
    wanted = os.environ.get(IMAGE_MODE_ENV, "auto").strip().lower()
    if wanted in MODES:
        _detected = wanted
    elif os.environ.get("TMUX") or not (
        sys.__stdout__ and sys.__stdout__.isatty() and sys.__stdin__ and sys.__stdin__.isatty()
    ):
        _detected = "halfblock"  # tmux drops kitty graphics and mangles sixel unless configured to pass them through
    else:
        try:
            # importing it asks the terminal what it can show
            from textual_image import renderable
        except (ImportError, OSError, ValueError, termios.error):
            _detected = "halfblock"
        else:
            _detected = {renderable.SixelImage: "sixel", renderable.TGPImage: "kitty"}.get(
                renderable.Image, "halfblock"
            )
            if _detected == "kitty" and not placeholders_work(terminal_version()):
                _detected = "halfblock"  # an old kitty answers the graphics query but shows textual-image's placeholders as boxes
    if _detected != "halfblock":
        import textual_image.widget  # noqa: F401  # measures the cell size while the terminal can still answer
    return _detected


def terminal_version() -> str | None:
    """The terminal's name and version from XTVERSION ("kitty(0.26.5)"), None without an answer; only before the app starts."""
    from textual_image._terminal import TerminalError, capture_terminal_response

    try:
        with capture_terminal_response(XTVERSION_REPLY, "\x1b\\", 0.3) as response:
            sys.__stdout__.write("\x1b[>0q")
            sys.__stdout__.flush()
    except (TerminalError, TimeoutError, OSError, ValueError, termios.error):
        return None
    return response.sequence[len(XTVERSION_REPLY) : -2]


def placeholders_work(version: str | None) -> bool:
    """False for a kitty older than 0.28: textual-image draws through Unicode placeholders, which came in 0.28."""
    found = re.fullmatch(r"kitty\((\d+)\.(\d+)\b.*\)", version or "")
    return not found or (int(found[1]), int(found[2])) >= KITTY_PLACEHOLDERS


def image_mode() -> Mode:
    """The mode detect_graphics chose, else half blocks: asking the terminal once Textual reads stdin would lose the answer."""
    return _detected or "halfblock"


@lru_cache(maxsize=4)
def _load(info: ImageInfo) -> Image:
    """The image as RGB, at most MAX_SIDE pixels a side; cached by path, change time and size."""
    return load_rgb(info, max_side=MAX_SIDE)


def fit(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """`width` x `height` scaled to fit in `max_width` x `max_height`, aspect kept, at least 1x1."""
    scale = min(max_width / width, max_height / height)
    return max(1, min(max_width, round(width * scale))), max(1, min(max_height, round(height * scale)))


def half_block_lines(image: Image, columns: int, rows: int, base: Style | None = None) -> list[Strip]:
    """`image` fitted into `columns` x `rows` cells and centred: one "▀" a cell, its colour the upper pixel, its background
    the lower. `base` (the widget's style) paints the cells around it, else the terminal's default background shows."""
    from PIL import Image as PILImage

    base = base or Style()
    width, height = fit(image.width, image.height, columns, rows * 2)  # a cell is about twice as tall as wide
    method = PILImage.Resampling.LANCZOS if width < image.width else PILImage.Resampling.NEAREST
    pixels = image.resize((width, height), method, reducing_gap=2.0).load()
    colors: dict[tuple[int, int, int], Color] = {}

    def color(x: int, y: int) -> Color:
        rgb = pixels[x, y]
        found = colors.get(rgb)
        if found is None:
            found = colors[rgb] = Color.from_rgb(*rgb)
        return found

    left, top = (columns - width) // 2, (rows - (height + 1) // 2) // 2
    blank = Strip.blank(columns, base)
    lines = [blank] * top
    for y in range(0, height, 2):
        segments = [Segment(" " * left, base)] if left else []
        for x in range(width):
            lower = color(x, y + 1) if y + 1 < height else base.bgcolor
            segments.append(Segment(UPPER_HALF, Style(color=color(x, y), bgcolor=lower)))
        segments.append(Segment(" " * (columns - left - width), base))
        lines.append(Strip(segments, columns).simplify())
    return lines + [blank] * (rows - len(lines))


def sixel_colors_first(data: str) -> str:
    """One sixel image with every colour register defined up front (after the raster attributes), each use a bare #N.

    textual-image defines a register where the pixel data first uses it; xterm (379, -ti vt340) then paints parts of
    the picture in other registers' colours (a yellow band on top, stray stripes) although the stream is valid.
    ImageMagick and libsixel put the palette first, which xterm draws right; so do we. A register defined twice is
    left alone, its meaning depends on where.
    """
    start = data.find("q") + 1
    if not start:
        return data
    raster = SIXEL_RASTER.match(data, start)
    body = raster.end() if raster else start
    colors = SIXEL_COLOR.findall(data, body)
    registers = [color[0] for color in colors]
    if not colors or len(set(registers)) < len(registers):
        return data
    palette = "".join(f"#{';'.join(color)}" for color in colors)
    return data[:body] + palette + SIXEL_NO_OP.sub("", SIXEL_COLOR.sub(r"#\1", data[body:]))


@lru_cache(maxsize=1)
def _sixel_widget() -> type[Widget]:
    """textual-image's sixel widget, its palette put first (sixel_colors_first); imported late: importing asks the terminal."""
    from textual_image.widget.sixel import Image, _ImageSixelImpl, _NoopRenderable

    class _PaletteFirstSixels(_ImageSixelImpl):
        def _image_to_sixels(self, image, sixel_options=None, background=None) -> str:
            return sixel_colors_first(super()._image_to_sixels(image, sixel_options, background))

    class PaletteFirstSixelImage(Image, Renderable=_NoopRenderable):
        def compose(self):
            yield _PaletteFirstSixels(self.image, self._sixel_options)

    return PaletteFirstSixelImage


class ImagePreview(Widget):
    """An image (a path or a checked ImageInfo) fitted to the widget, aspect kept; a message when there is none or it is bad."""

    DEFAULT_CSS = """
    ImagePreview {
        width: 1fr;
        height: 1fr;
        align: center middle;
        content-align: center middle;
        text-align: center;
    }
    ImagePreview > .image-preview--graphics {
        width: auto;
        height: auto;
    }
    """

    class Loaded(Message):
        """The image was checked and loaded and is now shown."""

        def __init__(self, preview: ImagePreview, info: ImageInfo) -> None:
            super().__init__()
            self.preview, self.info = preview, info

        @property
        def control(self) -> ImagePreview:
            """The preview that loaded it."""
            return self.preview

    class Failed(Message):
        """The image could not be shown; `error` says why in one line."""

        def __init__(self, preview: ImagePreview, error: str) -> None:
            super().__init__()
            self.preview, self.error = preview, error

        @property
        def control(self) -> ImagePreview:
            """The preview that failed."""
            return self.preview

    class _Result(Message, bubble=False):
        """A load worker's outcome for `source`: the info and image, or an error."""

        def __init__(self, source: object, info: ImageInfo | None, image: Image | None, error: str | None) -> None:
            super().__init__()
            self.source, self.info, self.image, self.error = source, info, image, error

    def __init__(
        self,
        image: str | Path | ImageInfo | None = None,
        *,
        placeholder: str = "No image",
        mode: Mode | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = placeholder
        self.mode: Mode = mode or image_mode()
        self.info: ImageInfo | None = None
        self.error: str | None = None
        self._source: str | Path | ImageInfo | None = image
        self._image: Image | None = None
        self._lines: tuple[tuple, list[Strip]] | None = None  # ((file key, columns, rows), lines)

    def on_mount(self) -> None:
        """Load the image given at construction."""
        if self._source is not None:
            self._load(self._source)

    def show(self, image: str | Path | ImageInfo | None) -> None:
        """Show `image` (checked and loaded in a thread), or the placeholder for None."""
        self._source, self.info, self.error, self._image, self._lines = image, None, None, None, None
        self.border_title = None
        self._show_graphics()
        self.refresh()
        if image is not None and self.is_attached:
            self._load(image)

    @work(thread=True, exclusive=True, group="image-preview", name="load image")
    def _load(self, source: str | Path | ImageInfo) -> None:
        """Check and load `source` off the UI thread; post the outcome."""
        try:
            info = source if isinstance(source, ImageInfo) else check_image(source)
            self.post_message(self._Result(source, info, _load(info), None))
        except ImageError as exc:
            self.post_message(self._Result(source, None, None, str(exc)))

    @on(_Result)
    def _keep_result(self, message: _Result) -> None:
        """Keep the outcome unless another image was asked for meanwhile; tell the parent."""
        if message.source is not self._source:
            return
        if message.error is not None:
            self.error = message.error
            self.post_message(self.Failed(self, message.error))
        else:
            self.info, self._image = message.info, message.image
            self.border_title = f"{self.info.path.name}  {self.info.width}x{self.info.height}"
            self.post_message(self.Loaded(self, self.info))
        self._show_graphics()
        self.refresh()

    def _show_graphics(self) -> None:
        """In kitty or sixel mode, put the loaded image in a textual-image widget (the old one goes)."""
        if self.mode == "halfblock" or not self.is_attached:
            return
        from textual_image.widget import TGPImage

        self.remove_children()
        if self._image is not None:
            kind = _sixel_widget() if self.mode == "sixel" else TGPImage
            self.mount(kind(self._image, classes="image-preview--graphics"))

    def render(self) -> Content:
        """The placeholder, the loading note or the error; the image itself is drawn by render_line or a child."""
        if self.error:
            return Content.styled(f"⚠ {self.error}", "$text-error")
        if self._source is None:
            return Content.styled(self.placeholder, "$text-muted")
        if self.info is None:
            return Content.styled("loading image…", "$text-muted")
        return Content("")

    def render_line(self, y: int) -> Strip:
        """Row `y` of the half-block picture, drawn once per file version and size."""
        if self.mode != "halfblock" or self._image is None or self.info is None:
            return super().render_line(y)
        columns, rows = self.content_size
        base = self.rich_style
        key = (self.info.key, columns, rows, base)
        if self._lines is None or self._lines[0] != key:
            self._lines = (key, half_block_lines(self._image, columns, rows, base) if columns and rows else [])
        lines = self._lines[1]
        return lines[y] if y < len(lines) else Strip.blank(columns, base)
