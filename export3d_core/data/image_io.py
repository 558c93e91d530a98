"""Robust loading of user images: every bad file becomes one clear `Export3DError`, never a traceback.

`load_image(path)` returns an (H, W, 3) uint8 RGB array whatever the file holds: grayscale, 16-bit,
palette, RGBA / LA (composited on a background colour), CMYK JPEG, EXIF-rotated photos, animated
GIFs (first frame) and unicode paths. Huge images are decoded with bounded memory: the size is read
from the header before any pixel is decoded, JPEGs are decoded at a reduced scale (`Image.draft`),
and anything that would still need more than `max_pixels` pixels is refused with a clear message.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from export3d_core.atomic import atomic_path
from export3d_core.errors import Export3DError

DEFAULT_MAX_SIDE = 4096  # longest side of the returned image; larger images are downscaled
# Largest image we agree to decode at full resolution (after JPEG draft): 100 MP is 300 MB of RGB,
# comfortably inside a desktop's memory while refusing decompression bombs.
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_BACKGROUND = (255, 255, 255)  # colour under transparent pixels (portraits: white studio)
_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_MAX = 65535

# Pillow's decompression-bomb guard is a module global; we lift it only while reading a header
# (cheap, no pixels) and do our own size check, so hold a lock to keep that window private.
_PIL_LIMIT_LOCK = threading.Lock()


def _open_header(path: Path) -> Image.Image:
    """Open lazily (header only). Pillow's own bomb check is replaced by ours in `load_image`."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_path(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise Export3DError(f"{path} is a symbolic link that leads nowhere (a loop or a missing target)")
    if not path.exists():
        raise Export3DError(f"image not found: {path}")
    if path.is_dir():
        raise Export3DError(f"{path} is a folder, not an image")
    if path.stat().st_size == 0:
        raise Export3DError(f"{path} is empty (0 bytes)")


def _reduce_for_decode(im: Image.Image, max_side: int, max_pixels: int, path: Path) -> None:
    """Shrink the decode (JPEG DCT scaling) before touching pixels; refuse what stays too big."""
    width, height = im.size
    if max(width, height) > max_side and im.format == "JPEG":
        scale = max_side / max(width, height)
        # draft picks the smallest DCT scale (1/2, 1/4, 1/8) that still covers the requested size
        im.draft(im.mode, (max(1, int(width * scale)), max(1, int(height * scale))))
    width, height = im.size
    if width * height > max_pixels:
        raise Export3DError(
            f"{path.name} is too large to open ({width}x{height} pixels, limit "
            f"{max_pixels // 1_000_000} megapixels); downscale it first")


def _to_uint8_rgb(im: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; alpha is composited over `background`."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)  # (H, W), up to 16 bits
        # 16-bit data is scaled down, not clipped (Pillow's convert("L") would saturate it).
        peak = _SIXTEEN_BIT_MAX if values.max(initial=0) > _EIGHT_BIT_MAX else _EIGHT_BIT_MAX
        gray = np.clip(values * (_EIGHT_BIT_MAX / peak), 0, _EIGHT_BIT_MAX).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)  # (H, W, 3)
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64))  # (H, W)
        peak = 1.0 if values.max(initial=0) <= 1.0 else float(_EIGHT_BIT_MAX)
        gray = np.clip(values * (_EIGHT_BIT_MAX / peak), 0, _EIGHT_BIT_MAX).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)  # (H, W, 3)
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (_EIGHT_BIT_MAX,))
        return np.asarray(Image.alpha_composite(base, rgba).convert("RGB"), dtype=np.uint8).copy()
    # CMYK (incl. Adobe's inverted JPEGs), YCbCr, LAB, HSV, L, 1, P: Pillow's converters are right.
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()  # (H, W, 3)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def load_image(path: str | Path, *, max_side: int = DEFAULT_MAX_SIDE,
               max_pixels: int = DEFAULT_MAX_PIXELS,
               background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> np.ndarray:
    """Read any still image as (H, W, 3) uint8 RGB, longest side at most `max_side`.

    Raises Export3DError (one line) for a missing, empty, truncated, unreadable or oversized file.
    """
    path = Path(path)
    try:
        _check_path(path)
    except OSError as exc:
        raise Export3DError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _open_header(path)
    except UnidentifiedImageError:
        raise Export3DError(f"{path.name} is not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Export3DError(f"cannot open {path.name}: {exc}") from None
    try:
        with im:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF / APNG / multi-page TIFF: the first frame
            _reduce_for_decode(im, max_side, max_pixels, path)
            try:
                im.load()
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise Export3DError(f"{path.name} is corrupt or truncated ({exc})") from None
            try:
                oriented = ImageOps.exif_transpose(im) or im
            except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
                oriented = im
            rgb = _to_uint8_rgb(oriented, background)
    except Export3DError:
        raise
    except MemoryError:
        raise Export3DError(f"not enough memory to decode {path.name}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Export3DError(f"cannot decode {path.name}: {exc}") from None
    return _downscale(rgb, max_side)


def save_image_atomic(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image beside `path` then rename it over, so no reader sees half a file."""
    path = Path(path)
    try:  # atomic_path creates missing folders
        with atomic_path(path, suffix=path.suffix or ".png") as tmp:
            Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp)
    except OSError as exc:
        where = exc.filename if exc.filename and str(exc.filename) != str(path) else ""
        reason = exc.strerror or str(exc)
        raise Export3DError(f"cannot write {path}: {f'{where}: ' if where else ''}{reason}") from None
    except (ValueError, KeyError) as exc:
        raise Export3DError(f"cannot write {path}: {exc}") from None
