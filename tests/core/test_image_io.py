"""load_image: every awkward input gives a correct RGB array or a one-line Export3DError."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from export3d_core.data.image_io import load_image, save_image_atomic
from export3d_core.errors import Export3DError

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _assert_one_line_error(path: Path, match: str, **kwargs) -> None:
    with pytest.raises(Export3DError, match=match) as info:
        load_image(path, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_empty_folder_and_not_an_image(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.png", "not found")
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_one_line_error(tmp_path / "empty.png", "empty")
    _assert_one_line_error(tmp_path, "folder")
    (tmp_path / "notes.jpg").write_text("this is not a picture", encoding="utf-8")
    _assert_one_line_error(tmp_path / "notes.jpg", "not an image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(noise).save(full, format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    _assert_one_line_error(cut, "corrupt|truncated|cannot")


def test_huge_png_is_refused_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("1", (20000, 20000), 1).save(path)  # 1-bit: 50 MB in memory, a few kB on disk
    _assert_one_line_error(path, "too large")


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    gradient = np.linspace(0, 255, 2000, dtype=np.float32)[None, :, None].repeat(1600, 0).repeat(3, 2)
    jpeg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    Image.fromarray(gradient.astype(np.uint8)).save(jpeg, quality=90)
    Image.fromarray(gradient.astype(np.uint8)).save(png)
    # 3.2 MP exceeds the budget unless the JPEG is decoded at 1/8 scale (250 x 200).
    rgb = load_image(jpeg, max_side=256, max_pixels=300_000)
    assert max(rgb.shape[:2]) <= 256 and rgb.shape[1] > rgb.shape[0]
    assert rgb[:, 0].mean() < 30 and rgb[:, -1].mean() > 225  # the gradient survived
    _assert_one_line_error(png, "too large", max_side=256, max_pixels=300_000)


def test_downscale_to_max_side(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), RED).save(path)
    rgb = load_image(path, max_side=150)
    assert rgb.shape == (50, 150, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[25, 75]) == RED


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    gray16 = np.full((8, 8), 32768, dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path)
    rgb = load_image(path)
    assert rgb.shape == (8, 8, 3)
    assert abs(int(rgb[0, 0, 0]) - 128) <= 1 and (rgb[..., 0] == rgb[..., 2]).all()

    colour16 = np.zeros((8, 8, 3), dtype=np.uint16)
    colour16[..., 2] = 65535  # BGR order for OpenCV: a pure red image
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), colour16)
    assert tuple(load_image(path)[4, 4]) == RED


def test_grayscale_rgba_and_palette(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 77).save(tmp_path / "gray.png")
    assert (load_image(tmp_path / "gray.png") == 77).all()

    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 0))  # transparent blue
    rgba.putpixel((0, 0), (255, 0, 0, 255))  # one opaque red pixel
    rgba.save(tmp_path / "alpha.png")
    rgb = load_image(tmp_path / "alpha.png", background=(10, 200, 30))
    assert tuple(rgb[0, 0]) == RED and tuple(rgb[5, 5]) == (10, 200, 30)

    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    pal.save(tmp_path / "pal.png", transparency=0)
    assert tuple(load_image(tmp_path / "pal.png")[3, 3]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    r, g, b = (int(v) for v in load_image(path)[8, 8])
    assert r > 230 and g < 30 and b < 30


def test_exif_rotation(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    rgb = load_image(path)
    assert rgb.shape == (40, 20, 3)  # portrait after the rotation
    top, bottom = rgb[5, 10].astype(int), rgb[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (12, 12), RED), Image.new("RGB", (12, 12), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert tuple(load_image(path)[6, 6]) == RED


def test_unicode_path_and_atomic_save(tmp_path: Path) -> None:
    path = tmp_path / "портрет 画像" / "éclair.png"
    noise = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    save_image_atomic(path, noise)
    assert np.array_equal(load_image(path), noise)
    assert [p.name for p in path.parent.iterdir()] == ["éclair.png"]  # no temp file left behind
