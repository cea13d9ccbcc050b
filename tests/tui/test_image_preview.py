"""ImagePreview (half blocks: fitting, caching, messages, snapshots) and PathInput (Tab completion, cycling)."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from rich.style import Style
from textual.app import App, ComposeResult
from textual.content import Content
from textual.widgets import Footer, Input

from engine.chat.images import IMAGE_SUFFIXES, check_image
from themes import THEMES
from tui.widgets import image_preview
from tui.widgets.image_preview import (
    SIXEL_COLOR,
    UPPER_HALF,
    ImagePreview,
    fit,
    half_block_lines,
    sixel_colors_first,
)
from tui.widgets.path_input import PathInput, path_matches

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
    """One ImagePreview (half blocks unless told), in xtui's dark theme."""

    def __init__(self, image: Path | None = None, mode: str = "halfblock") -> None:
        super().__init__()
        self.image, self.mode = image, mode
        self.messages: list[ImagePreview.Loaded | ImagePreview.Failed] = []

    def compose(self) -> ComposeResult:
        yield ImagePreview(self.image, mode=self.mode)
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


def test_odd_pixel_height_leaves_the_lower_half_in_the_widgets_background() -> None:
    base = Style(bgcolor="#102030")
    lines = half_block_lines(Image.new("RGB", (2, 3), (0, 255, 0)), 2, 5, base)
    drawn = [line for line in lines if line.text.strip()]
    assert len(drawn) == 2
    assert [s.style.bgcolor for s in drawn[-1] if s.text.strip()] == [base.bgcolor]


def test_cells_around_the_picture_take_the_widgets_background() -> None:
    """Not the terminal's default background (a black band beside a centred picture in a dark theme)."""
    base = Style(bgcolor="#102030")
    lines = half_block_lines(Image.new("RGB", (2, 2), (255, 0, 0)), 6, 3, base)
    padding = [s for line in lines for s in line if not s.text.strip()]
    assert padding and all(s.style.bgcolor == base.bgcolor for s in padding)


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

    def counting(image, columns, rows, base):
        calls.append((columns, rows))
        return real(image, columns, rows, base)

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


@pytest.fixture
def no_terminal(monkeypatch) -> io.StringIO:
    """No terminal to ask (textual-image asks the real one on import) and a fresh mode choice; what it writes is kept."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "__stdout__", out)
    monkeypatch.setattr(image_preview, "_detected", None)
    monkeypatch.delenv("TMUX", raising=False)
    return out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "halfblock"),
        ({"XTUI_IMAGE_MODE": "Sixel"}, "sixel"),
        ({"XTUI_IMAGE_MODE": "kitty", "TMUX": "x"}, "kitty"),
        ({"XTUI_IMAGE_MODE": "auto", "TMUX": "/tmp/tmux-0/default,1,0"}, "halfblock"),
        ({"XTUI_IMAGE_MODE": "bogus"}, "halfblock"),
    ],
)
def test_mode_choice(no_terminal, monkeypatch, env, expected) -> None:
    assert image_preview.image_mode() == "halfblock"  # not detected yet: never ask a terminal Textual is reading
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert image_preview.detect_graphics() == expected == image_preview.image_mode() == ImagePreview().mode


@pytest.mark.parametrize(
    ("version", "kitty"),
    [
        ("kitty(0.26.5)", False),
        ("kitty(0.27.1)", False),
        ("kitty(0.28.0)", True),
        ("kitty(0.42.2)", True),
        ("kitty(1.0.0)", True),
        ("ghostty 1.1.3", True),
        ("WezTerm 20240203", True),
        (None, True),
    ],
)
def test_old_kitty_gets_half_blocks(no_terminal, monkeypatch, version, kitty) -> None:
    """kitty before 0.28 answers the graphics query but shows textual-image's Unicode placeholders as boxes."""
    from textual_image import renderable

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "__stdout__", Tty())
    monkeypatch.setattr(sys, "__stdin__", Tty())
    monkeypatch.setattr(renderable, "Image", renderable.TGPImage)
    monkeypatch.setattr(image_preview, "terminal_version", lambda: version)
    monkeypatch.setitem(sys.modules, "textual_image.widget", sys.modules.get("textual_image.widget") or object())
    assert image_preview.placeholders_work(version) is kitty
    assert image_preview.detect_graphics() == ("kitty" if kitty else "halfblock")


@pytest.mark.parametrize(("mode", "marker"), [("kitty", "\x1b_G"), ("sixel", "\x1bP")])
async def test_graphics_modes_go_through_textual_image(no_terminal, root, mode, marker) -> None:
    app = PreviewApp(shapes_png(root / "shapes.png"), mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settled(pilot)
        await pilot.pause()
        preview = app.query_one(ImagePreview)
        (child,) = preview.children
        assert child.region.size == (74, 23)  # 160x100 fitted in 80x23 cells of 10x20 pixels (the default)
        drawn = "".join(
            s.text for w in (child, *child.children) for line in w.render_lines(w.region.reset_offset) for s in line
        )
        assert marker in no_terminal.getvalue() + drawn
        if mode == "sixel":  # the palette first: xterm miscolours registers defined inside the pixel data
            sixels = drawn[drawn.index("\x1bP") :]
            assert sixels == sixel_colors_first(sixels) and SIXEL_COLOR.search(sixels).start() == sixels.index(
                '"'
            ) + len('"1;1;740;460')


def test_sixel_palette_goes_first(root) -> None:
    from textual_image._sixel import image_to_sixels

    image = Image.open(shapes_png(root / "shapes.png")).convert("RGB")
    lazy = image_to_sixels(image)  # each register defined where the pixels first use it
    header = '\x1bP0;0;0q"1;1;160;100'
    assert lazy.startswith(header) and not lazy[len(header) :].startswith("#0;2;")
    eager = sixel_colors_first(lazy)
    defined = SIXEL_COLOR.findall(lazy)
    palette = "".join(f"#{';'.join(color)}" for color in defined)
    assert eager.startswith(header + palette) and SIXEL_COLOR.findall(eager) == defined
    assert _sixel_pixels(eager) == _sixel_pixels(lazy) and len(set(_sixel_pixels(eager).values())) >= 20
    assert sixel_colors_first(eager) == eager
    twice = '\x1bPq"1;1;2;6#1;2;100;0;0~#1;2;0;100;0~\x1b\\'  # a register redefined: its meaning depends on where
    assert sixel_colors_first(twice) == twice and sixel_colors_first("not sixel") == "not sixel"


def _sixel_pixels(data: str) -> dict[tuple[int, int], tuple[str, ...]]:
    """Each set pixel's colour (the register's definition), decoded from a sixel image: enough of the format for the test."""
    import re

    body = data[data.index("q") + 1 : data.index("\x1b\\")]
    colors, pixels, x, band, current = {}, {}, 0, 0, None
    for token in re.finditer(r'"[\d;]+|#(\d+)((?:;\d+){4})?|!(\d+)([?-~])|([?-~])|(\$)|(-)', body):
        select, definition, count, repeated, single, cr, nl = token.groups()
        if select is not None:
            current = select
            if definition:
                colors[select] = tuple(definition[1:].split(";"))
        elif repeated or single:
            for _ in range(int(count or 1)):
                bits = ord(repeated or single) - 63
                pixels.update({(x, band * 6 + b): colors[current] for b in range(6) if bits >> b & 1})
                x += 1
        elif cr:
            x = 0
        elif nl:
            x, band = 0, band + 1
    return pixels


@pytest.fixture
def tree(tmp_path) -> Path:
    """A folder with pictures, a note, hidden files and two sub-folders."""
    for name in ("photo1.png", "photo2.JPG", "notes.txt", ".hidden.png", ".config"):
        (tmp_path / name).write_text("x")
    for name in ("pics", "pictures", ".cache"):
        (tmp_path / name).mkdir()
    (tmp_path / "pics" / "cat.png").write_text("x")
    return tmp_path


class FormApp(App[None]):
    """A PathInput between two other inputs, so focus moves are visible."""

    def __init__(self, cwd: Path, **kwargs) -> None:
        super().__init__()
        self.cwd, self.kwargs = cwd, kwargs

    def compose(self) -> ComposeResult:
        yield Input(id="before")
        yield PathInput(cwd=self.cwd, id="path", **self.kwargs)
        yield Input(id="after")
        yield Footer()

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "xtui-dark"
        self.query_one(PathInput).focus()


async def _type(pilot, text: str) -> None:
    await pilot.press(*text)
    await pilot.pause()


def test_path_matches(tree) -> None:
    assert path_matches("ph", tree) == ("", ["photo1.png", "photo2.JPG"])
    assert path_matches("pic", tree) == ("", ["pics/", "pictures/"])
    assert path_matches(".", tree) == ("", [".cache/", ".config", ".hidden.png"])
    assert path_matches("", tree, (".png", ".jpg")) == ("", ["photo1.png", "photo2.JPG", "pics/", "pictures/"])
    assert path_matches(f"{tree}/pics/c", Path("/")) == (f"{tree}/pics/", ["cat.png"])
    assert path_matches("nowhere/x", tree) == ("nowhere/", [])
    assert path_matches("~", tree) == ("", ["~/"])


async def test_tab_completes_common_prefix_then_cycles(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "ph")
        await pilot.press("tab")
        assert field.value == "photo" and field.matches == ["photo1.png", "photo2.JPG"]
        assert Content.from_markup(field.border_subtitle).plain == "2 matches: photo1.png photo2.JPG"
        await pilot.press("tab")
        assert field.value == "photo1.png" and field.cursor_position == 10
        await pilot.press("tab")
        assert field.value == "photo2.JPG"
        await pilot.press("tab")
        assert field.value == "photo1.png"
        await pilot.press("shift+tab")
        assert field.value == "photo2.JPG" and app.focused is field


async def test_shift_tab_first_goes_to_the_last_match(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "pi")
        await pilot.press("tab")
        assert field.value == "pic"
        await pilot.press("shift+tab")
        assert field.value == "pictures/"


async def test_typing_ends_the_cycle(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "ph")
        await pilot.press("tab")
        await _type(pilot, "2")
        assert field.matches == [] and field.border_subtitle is None
        await pilot.press("tab")
        assert field.value == "photo2.JPG" and app.focused is field


async def test_folders_get_a_slash_and_completion_goes_on_inside(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "pics")
        await pilot.press("tab")
        assert field.value == "pics/"
        await pilot.press("tab")
        assert field.value == "pics/cat.png" and app.focused is field


async def test_hidden_names_only_after_a_dot(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, ".h")
        await pilot.press("tab")
        assert field.value == ".hidden.png"


async def test_tilde_is_kept_and_expanded(tree, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    app = FormApp(Path("/"))
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "~")
        await pilot.press("tab")
        assert field.value == "~/"
        await _type(pilot, "no")
        await pilot.press("tab")
        assert field.value == "~/notes.txt"


async def test_suffixes_keep_only_matching_files(tree) -> None:
    app = FormApp(tree, suffixes=IMAGE_SUFFIXES)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        await _type(pilot, "n")
        await pilot.press("tab")
        assert field.value == "n" and app.focused.id == "after"


@pytest.mark.parametrize("typed", ["", "zzz", "notes.txt"])
async def test_tab_moves_focus_when_nothing_to_complete(tree, typed) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        await _type(pilot, typed)
        await pilot.press("tab")
        assert app.query_one(PathInput).value == typed and app.focused.id == "after"
        await pilot.press("shift+tab")
        assert app.focused.id == "path"


async def test_completes_before_the_cursor_keeping_the_rest(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(PathInput)
        field.value = "pics and more"
        field.cursor_position = 4
        await pilot.press("tab")
        assert field.value == "pics/ and more" and field.cursor_position == 5


async def test_footer_names_the_tab_binding(tree) -> None:
    app = FormApp(tree)
    async with app.run_test(size=(80, 24)):
        shown = {b.binding.description for b in app.active_bindings.values() if b.binding.show}
        assert "Complete path" in shown


def test_snapshot_path_input_cycling(snap_compare, tree) -> None:
    app = FormApp(tree)

    async def cycled(pilot) -> None:
        for field in app.query(Input):
            field.cursor_blink = False  # a blinking cursor is not a fixed picture
        await _type(pilot, "p")
        await pilot.press("tab", "tab")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=cycled)
