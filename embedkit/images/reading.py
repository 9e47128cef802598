"""Reading microscope images: one 2-D plane per file, clear errors instead of tracebacks.

A plate holds thousands of files; one corrupt or odd file must produce a sentence naming
it (so the embedder can mark that site invalid and carry on), not a decoder traceback.
TIFF goes through tifffile (LZW/Deflate/… need `imagecodecs`), PNG/JPEG through Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedkit.errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
NATIVE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
MAX_REASON = 200
# Pixels per plane read at most: checked from the file's header before any decoding, so a
# crafted header (60000 x 60000) or a deflate bomb is refused in one sentence instead of
# exhausting memory. 2**27 ≈ 134 M pixels (11,585²); a microscope field is ~5 M.
MAX_PIXELS_ENV = "EMBEDKIT_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 1 << 27


def max_pixels() -> int:
    """The pixel limit: EMBEDKIT_MAX_IMAGE_PIXELS when set (a positive integer), else 2**27."""
    import os

    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive number of pixels")
    return value


def check_pixels(path: Path, shape: Sequence[int]) -> None:
    """Refuse a plane larger than `max_pixels()` from its header's dimensions alone."""
    count = int(np.prod([int(n) for n in shape], dtype=np.float64))
    limit = max_pixels()
    if count > limit:
        dims = " x ".join(str(int(n)) for n in shape)
        raise ImageReadError(
            f"{path}: the header claims {dims} = {count:,} pixels, more than the {limit:,} "
            f"embedkit reads (set {MAX_PIXELS_ENV} to raise the limit)"
        )


class ImageReadError(InputError):
    """A file is missing, corrupt, truncated, or not a single grayscale plane."""


class SiteError(InputError):
    """The channel files of one site do not fit together (bit depth or size)."""


def read_image(path: str | Path) -> np.ndarray:
    """One 2-D plane in its native dtype (uint8, uint16 or float32)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        array = _decode(path, _read_tiff)
    elif suffix in PIL_SUFFIXES:
        array = _decode(path, _read_pil)
    else:
        raise ImageReadError(
            f"{path}: unsupported image format {suffix or '(no suffix)'!r}; "
            f"use {' '.join(TIFF_SUFFIXES + PIL_SUFFIXES)}"
        )
    return _native(path, _plane(path, array))


def read_site(paths: Sequence[str | Path | None]) -> np.ndarray:
    """Stack one site's channels as float32 (C, H, W) in [0, 1], scaled by the bit depth
    (uint8 / 255, uint16 / 65535; float images kept as they are)."""
    if not paths:
        raise SiteError("no channel files given for the site")
    if any(p is None for p in paths):
        listed = ", ".join(str(p) for p in paths)
        raise SiteError(f"a channel file is missing (None) in the site: {listed}")
    planes = [read_image(p) for p in paths if p is not None]
    names = [str(p) for p in paths]
    if len({a.dtype for a in planes}) > 1:
        listed = "; ".join(f"{n}: {a.dtype}" for n, a in zip(names, planes, strict=True))
        raise SiteError(f"mixed bit depths in one site ({listed}); convert to one bit depth")
    if len({a.shape for a in planes}) > 1:
        listed = "; ".join(
            f"{n}: {a.shape[0]}x{a.shape[1]}" for n, a in zip(names, planes, strict=True)
        )
        raise SiteError(f"channels of one site differ in size ({listed})")
    site = np.empty((len(planes), *planes[0].shape), dtype=np.float32)
    scale = np.float32(SCALE[planes[0].dtype])
    for i, plane in enumerate(planes):
        np.divide(plane, scale, out=site[i], casting="unsafe")
        if plane.dtype.kind == "f" and not np.isfinite(site[i]).all():
            bad = int((~np.isfinite(site[i])).sum())
            raise SiteError(
                f"{names[i]}: {bad:,} non-finite pixels (NaN or inf), which would blank the "
                "whole channel of every crop; fix or mask them"
            )
    return site


def _decode(path: Path, reader) -> np.ndarray:
    """Run a decoder; any decoder failure becomes one ImageReadError naming the file.

    Decoders raise many unrelated types on bad bytes (OSError, ValueError, struct.error,
    imagecodecs errors, …), so the catch is deliberately broad."""
    try:
        return reader(path)
    except ImageReadError:
        raise
    except MemoryError as err:  # one site, one invalid row: never the whole run
        raise ImageReadError(f"{path}: out of memory while decoding the image") from err
    except Exception as err:  # noqa: BLE001 - see docstring
        reason = f"{type(err).__name__}: {err}".strip()
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        raise ImageReadError(
            f"{path}: cannot read image, corrupt or truncated? ({reason})"
        ) from err


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.series) == 0:
            raise ImageReadError(f"{path}: TIFF holds no image")
        series = tif.series[0]
        if len(tif.series) > 1 or len(series.pages) > 1:
            raise ImageReadError(
                f"{path}: TIFF holds {len(tif.pages)} pages; expected a single 2-D plane "
                "(save one file per channel / z-plane)"
            )
        check_pixels(path, series.shape)  # before decoding a byte of pixel data
        return series.asarray()


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        check_pixels(path, image.size)  # from the header, before decoding
        if getattr(image, "n_frames", 1) > 1:
            raise ImageReadError(
                f"{path}: image holds {image.n_frames} frames; expected a single 2-D plane"
            )
        image.load()
        if image.mode not in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            raise ImageReadError(
                f"{path}: {image.mode} image; expected one grayscale channel per file "
                "(split color channels into separate files)"
            )
        array = np.asarray(image.convert("L") if image.mode == "1" else image)
        if image.mode == "I" and path.suffix.lower() == ".png":
            array = array.astype(np.uint16)  # Pillow opens 16-bit grayscale PNG as int32
        return array


def _plane(path: Path, array: np.ndarray) -> np.ndarray:
    """Squeeze singleton axes; anything other than one 2-D plane is refused."""
    plane = np.squeeze(array)
    if plane.ndim != 2:
        kind = "RGB/multi-sample" if array.ndim == 3 and array.shape[-1] in (3, 4) else "stack"
        raise ImageReadError(
            f"{path}: image has shape {array.shape} ({kind}); expected a single 2-D plane "
            "(one grayscale channel per file)"
        )
    return plane


def _native(path: Path, plane: np.ndarray) -> np.ndarray:
    """Keep uint8/uint16/float32; float64 → float32, bool → 0/255 uint8; refuse the rest."""
    if plane.dtype in NATIVE_DTYPES:
        return plane
    if plane.dtype == np.bool_:
        return plane.astype(np.uint8) * np.uint8(255)
    if plane.dtype.kind == "f":
        return plane.astype(np.float32)
    raise ImageReadError(
        f"{path}: unsupported pixel type {plane.dtype}; expected uint8, uint16 or float32"
    )
