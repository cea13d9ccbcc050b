"""ImagePreview (half blocks: fitting, caching, messages, snapshots) and PathInput (Tab completion, cycling)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from textual.app import App, ComposeResult
from textual.widgets import Footer

from engine.images import check_image
from themes import THEMES
from tui.widgets import image_preview
from tui.widgets.image_preview import UPPER_HALF, ImagePreview, fit, half_block_lines

pytestmark = pytest.mark.anyio

ROOT = Path("/tmp/xtui-snapshot-images")  # fixed: the error message shows the path
SIZES = [(80, 24), (120, 40)]


def shapes_png(path: Path) -> Path:
    """A 160x100 picture: a colour ramp on top, a red disc, a green square, a yellow triangle on navy."""
    image = Image.new("RGB", (160, 100), (30, 30, 60))
    draw = ImageDraw.Draw(image)
    for x in range(160):
        draw.line([(x, 0), (x, 15)], fill=(x * 255 // 159, 128, 255 - x * 255 // 159))
    draw.ellipse([10, 25, 70, 85], fill=(220, 40, 40))
    draw.rectangle([90, 30, 150, 90], fill=(40, 200, 80))
    draw.polygon([(120, 35), (145, 85), (95, 85)], fill=(250, 220, 0))
    image.save(path)
    return path


@pytest.fixture
def root() -> Path:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir()
    yield ROOT
    shutil.rmtree(ROOT, ignore_errors=True)


class PreviewApp(App[None]):
    """One ImagePreview in half-block mode, in xtui's dark theme."""

    def __init__(self, image: Path | None = None) -> None:
        super().__init__()
        self.image = image
        self.messages: list[ImagePreview.Loaded | ImagePreview.Failed] = []

    def compose(self) -> ComposeResult:
        yield ImagePreview(self.image, mode="halfblock")
        yield Footer()

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "xtui-dark"

    def on_image_preview_loaded(self, message: ImagePreview.Loaded) -> None:
        self.messages.append(message)

    def on_image_preview_failed(self, message: ImagePreview.Failed) -> None:
        self.messages.append(message)


async def _settled(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_fit_keeps_aspect() -> None:
    assert fit(160, 100, 80, 46) == (74, 46)
    assert fit(10, 1000, 80, 46) == (1, 46)
    assert fit(4, 2, 80, 46) == (80, 40)


def test_half_block_lines_centre_and_colour() -> None:
    image = Image.new("RGB", (4, 4), (255, 0, 0))
    image.paste((0, 0, 255), (0, 2, 4, 4))  # top half red, bottom half blue
    lines = half_block_lines(image, 10, 4)  # fits as 8x8 pixels: 8 columns, 4 rows
    assert [line.text for line in lines] == [" " + UPPER_HALF * 8 + " "] * 4
    colours = [(s.style.color.triplet, s.style.bgcolor.triplet) for s in lines[1] if s.text.strip()]
    assert colours == [((255, 0, 0), (255, 0, 0))]
    colours = [(s.style.color.triplet, s.style.bgcolor.triplet) for s in lines[2] if s.text.strip()]
    assert colours == [((0, 0, 255), (0, 0, 255))]


def test_odd_pixel_height_leaves_the_lower_half_empty() -> None:
    lines = half_block_lines(Image.new("RGB", (2, 3), (0, 255, 0)), 2, 5)
    drawn = [line for line in lines if line.text.strip()]
    assert len(drawn) == 2
    assert [s.style.bgcolor for s in drawn[-1] if s.text.strip()] == [None]


async def test_shows_and_posts_loaded(root) -> None:
    path = shapes_png(root / "shapes.png")
    app = PreviewApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settled(pilot)
        preview = app.query_one(ImagePreview)
        assert preview.info == check_image(path) and preview.error is None
        assert [type(m) for m in app.messages] == [ImagePreview.Loaded]
        assert preview.border_title == "shapes.png  160x100"
        assert UPPER_HALF in preview.render_line(10).text


async def test_error_and_placeholder_and_failed_message(root) -> None:
    app = PreviewApp()
    async with app.run_test(size=(80, 24)) as pilot:
        preview = app.query_one(ImagePreview)
        await _settled(pilot)
        assert "No image" in preview.render().plain
        preview.show(root / "missing.png")
        await _settled(pilot)
        assert preview.error == f"no such file: {root / 'missing.png'}"
        assert isinstance(app.messages[-1], ImagePreview.Failed) and app.messages[-1].error == preview.error
        assert preview.render().plain == f"⚠ {preview.error}"
        preview.show(None)
        await _settled(pilot)
        assert "No image" in preview.render().plain


async def test_drawn_once_per_file_version_and_size(root, monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    real = image_preview.half_block_lines

    def counting(image, columns, rows):
        calls.append((columns, rows))
        return real(image, columns, rows)

    monkeypatch.setattr(image_preview, "half_block_lines", counting)
    path = shapes_png(root / "shapes.png")
    app = PreviewApp(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settled(pilot)
        preview = app.query_one(ImagePreview)
        preview.refresh()
        await pilot.pause()
        assert calls == [(80, 23)]
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert calls == [(80, 23), (100, 29)]
        Image.new("RGB", (50, 50), "white").save(path)
        os.utime(path, ns=(1, 1))  # a new version of the file: another change time and size
        preview.show(path)
        await _settled(pilot)
        assert len(calls) == 3 and preview.info.width == 50


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_image(snap_compare, size, root) -> None:
    app = PreviewApp(shapes_png(root / "shapes.png"))
    assert snap_compare(app, terminal_size=size, run_before=_settled)


def test_snapshot_error(snap_compare, root) -> None:
    notes = root / "notes.png"
    notes.write_text("these are my notes, not a picture\n")
    app = PreviewApp(notes)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settled)
