"""engine.chat.images: every way a path can fail to be a usable image, with real files, and loading as RGB."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from engine.chat.images import MAX_BYTES, ImageError, check_image, expand_user_path, load_rgb


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG claiming `width` x `height` (8-bit RGB) with next to no pixel data: tiny on disk, huge when decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (64, 32), (200, 30, 30)).save(path)
    return path


def _error(path) -> str:
    with pytest.raises(ImageError) as caught:
        check_image(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_good_png(png) -> None:
    info = check_image(png)
    assert (info.path, info.width, info.height, info.format) == (png.resolve(), 64, 32, "PNG")
    assert info.size_bytes == png.stat().st_size and info.key == (
        str(png.resolve()),
        png.stat().st_mtime_ns,
        info.size_bytes,
    )


def test_good_jpeg_and_tilde(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    Image.new("RGB", (10, 20), "blue").save(tmp_path / "photo.jpg")
    info = check_image("~/photo.jpg")
    assert (info.width, info.height, info.format) == (10, 20, "JPEG")


def test_empty_path() -> None:
    assert _error("") == "no image path given"
    assert _error("   ") == "no image path given"


def test_missing_file(tmp_path) -> None:
    assert _error(tmp_path / "nope.png") == f"no such file: {tmp_path / 'nope.png'}"


def test_directory(tmp_path) -> None:
    assert _error(tmp_path) == f"{tmp_path} is a folder, not an image"


def test_unreadable(png, monkeypatch) -> None:
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == png:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)  # root (as in CI) reads any file whatever its mode
    assert _error(png) == f"cannot read {png}: permission denied"


def test_text_file_renamed_png(tmp_path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are my notes\nnot a picture\n")
    assert _error(path) == f"{path} is not an image: it looks like text"


def test_other_non_images(tmp_path) -> None:
    pdf, blob, empty = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    pdf.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    blob.write_bytes(bytes(range(256)) * 4)
    empty.write_bytes(b"")
    assert _error(pdf).endswith("it looks like a PDF document")
    assert _error(blob) == f"{blob} is not an image"
    assert _error(empty).endswith("it looks like an empty file")


def test_truncated_png(tmp_path) -> None:
    path = tmp_path / "cut.png"
    noise = Image.frombytes("RGB", (128, 128), bytes((i * 7919) % 251 for i in range(128 * 128 * 3)))
    noise.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _error(path).startswith(f"{path} is damaged or truncated: ")


def test_corrupt_png_chunk(png) -> None:
    data = bytearray(png.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 4] = b"\xff\xff\xff\xff"  # pixel data no longer matches its CRC
    png.write_bytes(bytes(data))
    assert "damaged or truncated" in _error(png)


def test_huge_by_pixels_header_only(tmp_path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(9000, 9000))  # 81 MP claimed, 65 bytes on disk
    assert _error(path) == f"{path} is too large: 9000x9000 pixels (limit 67 MP)"


@pytest.mark.parametrize("side", [10_000, 30_000])  # past PIL's limit (it warns), past twice it (it refuses)
def test_decompression_bomb(tmp_path, side) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    assert _error(path) == f"{path} is too large: over 89 MP (a decompression bomb?)"


def test_limits_are_parameters(png) -> None:
    with pytest.raises(ImageError, match=r"64x32 pixels \(limit 0 MP\)"):
        check_image(png, max_pixels=1000)
    with pytest.raises(ImageError, match=r"too large: 0.0 MiB"):
        check_image(png, max_bytes=10)


def test_huge_by_bytes_sparse_file(tmp_path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as fh:
        fh.write(_png_header(100, 100))
        fh.truncate(MAX_BYTES + (1 << 20))  # sparse: no disk space used
    assert _error(path) == f"{path} is too large: 101.0 MiB (limit 100.0 MiB)"


def test_load_rgb_flattens_alpha_and_shrinks(tmp_path) -> None:
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (400, 200), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 200, 200))
    image.save(path)
    loaded = load_rgb(check_image(path), max_side=100, background=(10, 20, 30))
    assert loaded.mode == "RGB" and loaded.size == (100, 50)
    assert loaded.getpixel((10, 25)) == (10, 20, 30) and loaded.getpixel((90, 25)) == (0, 0, 255)


def test_load_rgb_of_a_file_broken_after_check(png) -> None:
    info = check_image(png)
    png.write_text("gone")
    with pytest.raises(ImageError, match="could not be loaded"):
        load_rgb(info)


def test_expand_user_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    assert expand_user_path("~/a.png", tmp_path) == Path("/home/me/a.png")
    assert expand_user_path(" pics/a.png ", tmp_path) == tmp_path / "pics/a.png"
    assert expand_user_path("'/x/my pic.png'", tmp_path) == Path("/x/my pic.png")
    assert expand_user_path("file:///x/my%20pic.png", tmp_path) == Path("/x/my pic.png")


def test_load_rgb_of_a_big_jpeg_decodes_small_and_turns_upright(tmp_path) -> None:
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show it rotated by 90 degrees
    Image.new("RGB", (3000, 1000), (0, 128, 0)).save(path, exif=exif)
    loaded = load_rgb(check_image(path), max_side=500)
    assert loaded.size == (167, 500) and loaded.mode == "RGB"
