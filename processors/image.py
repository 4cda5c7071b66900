"""Image steps shared by every operation: open, load, orient, to_srgb, encode.

Each step is a pure function from image to image (or bytes), so operations compose them
as they need and nothing about one image is kept between calls. Pillow errors are
translated into darkroom's error tree here, where they enter, and nowhere else.

Pillow's own decompression-bomb check (``Image.MAX_IMAGE_PIXELS``) is a process-wide
setting that cannot follow per-call ``Limits``, so it is switched off and replaced by
the check in ``open_image``, made from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageOps

from processors.errors import (
    EmptyInput,
    FileTooLarge,
    NotAnImage,
    TooManyFrames,
    TooManyPixels,
    TruncatedImage,
    UnsupportedImage,
)
from processors.operation import Limits

pillow_heif.register_heif_opener()
Image.MAX_IMAGE_PIXELS = None

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_ORIENTATION = ExifTags.Base.Orientation
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True, kw_only=True)
class OutputFormat:
    """An encoding darkroom can write; ``alpha`` says whether it can hold transparency."""

    name: str
    pillow_format: str
    content_type: str
    extension: str
    alpha: bool


JPEG = OutputFormat(name="jpeg", pillow_format="JPEG", content_type="image/jpeg", extension="jpg", alpha=False)
WEBP = OutputFormat(name="webp", pillow_format="WEBP", content_type="image/webp", extension="webp", alpha=True)
AVIF = OutputFormat(name="avif", pillow_format="AVIF", content_type="image/avif", extension="avif", alpha=True)
PNG = OutputFormat(name="png", pillow_format="PNG", content_type="image/png", extension="png", alpha=True)
PNG_COMPRESS_LEVEL = 4
"""zlib level for PNG. On photographs level 4 writes files about as small as Pillow's default
6 in a third of the time, which matters for 16-megapixel upscale outputs (the gap between
``project_seconds`` and ``project_network_seconds`` in ``benchmarks/upscale.py``)."""

FORMATS: Mapping[str, OutputFormat] = {
    "jpeg": JPEG,
    "jpg": JPEG,
    "webp": WEBP,
    "avif": AVIF,
    "png": PNG,
}
"""Output formats by the names a pipeline spec may use (``jpg`` is an alias)."""
AUTO = "auto"
"""The default ``format``: chosen per image by ``format_for``."""


def has_transparency(img: Image.Image) -> bool:
    """Whether any pixel of a working-mode image is not fully opaque."""
    if img.mode not in ("RGBA", "LA"):
        return False
    low, _ = img.getchannel("A").getextrema()
    return low != 255


def encoded_has_transparency(data: bytes) -> bool:
    """Whether an encoded image (an output, say) has a pixel that is not fully opaque."""
    with Image.open(io.BytesIO(data)) as img:
        return has_transparency(img.convert("RGBA") if "A" in img.getbands() else img)


def format_name(fmt: OutputFormat | None) -> str:
    """A ``format`` parameter's value as canonical params spell it (None: ``auto``)."""
    return AUTO if fmt is None else fmt.name


def format_for(choice: OutputFormat | None, img: Image.Image) -> OutputFormat:
    """The format to write ``img`` in: ``choice``, or for ``format=auto`` (None) PNG where the
    image has transparency and JPEG where it is opaque, so alpha survives every chain of
    default steps and photos stay small."""
    if choice is not None:
        return choice
    return PNG if has_transparency(img) else JPEG


@contextmanager
def _pillow_errors(*, loading: bool) -> Iterator[None]:
    """Translate Pillow and codec errors; ``loading`` tells header errors from pixel ones.

    An I/O error while pixels are decoded almost always means the data stops early or is
    damaged; any other failure means Pillow cannot handle the file. MemoryError passes
    through untouched: it says nothing about the input, so it must not become permanent.
    """
    try:
        yield
    except MemoryError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise NotAnImage("the input is not an image in a supported format") from exc
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from exc
    except (OSError, SyntaxError, EOFError) as exc:
        if loading and "not available" not in str(exc):
            raise TruncatedImage(f"image data is truncated or corrupt: {exc}") from exc
        raise UnsupportedImage(f"cannot decode image: {exc}") from exc
    except Exception as exc:
        raise UnsupportedImage(f"cannot decode image: {exc}") from exc


def open_image(data: bytes, limits: Limits) -> Image.Image:
    """Identify the image and check every limit from its header; no pixels are decoded.

    Kept apart from ``load`` so that a caller can look at the size and orientation
    first and ask for a reduced (draft) decode.
    """
    if not data:
        raise EmptyInput("the input is empty")
    if len(data) > limits.max_file_bytes:
        raise FileTooLarge(f"the input has {len(data)} bytes; the limit is {limits.max_file_bytes}")
    with _pillow_errors(loading=False):
        img = Image.open(io.BytesIO(data))
        frames = getattr(img, "n_frames", 1)
    width, height = img.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} ({width * height} pixels); the limit is {limits.max_pixels}"
        )
    if frames > limits.max_frames:
        raise TooManyFrames(f"the image has {frames} frames; the limit is {limits.max_frames}")
    return img


def load(img: Image.Image, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode the first frame's pixels of an image from ``open_image``.

    With ``draft_size`` a JPEG is decoded by libjpeg at the smallest scale (1/2, 1/4,
    1/8) that still covers that size in both dimensions: several times faster than
    decoding in full and then shrinking. Other formats ignore it.
    """
    with _pillow_errors(loading=True):
        if draft_size is not None:
            img.draft(None, draft_size)
        img.load()
    return img


def decode(data: bytes, limits: Limits) -> Image.Image:
    """Open, check and fully decode the first frame: for operations that need every pixel."""
    return load(open_image(data, limits))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8); 1 when absent, invalid or unreadable."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block must not fail an otherwise good image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def display_size(img: Image.Image) -> tuple[int, int]:
    """The size ``img`` will have after ``orient``; readable before ``load``.

    Lets a caller plan a draft decode in the orientation its sizes are given in.
    """
    width, height = img.size
    return (height, width) if _orientation(img) in _SWAPPING_ORIENTATIONS else (width, height)


def orient(img: Image.Image) -> Image.Image:
    """Turn the pixels upright as EXIF orientation asks; the tag is removed from the result.

    Images that are already upright are returned as they are (``exif_transpose`` would
    copy them).
    """
    if _orientation(img) == 1:
        return img
    return ImageOps.exif_transpose(img)


def to_srgb(img: Image.Image) -> Image.Image:
    """Bring any decoded image into darkroom's working modes: 8-bit sRGB ``RGB``/``RGBA``/``L``.

    ``RGBA`` whenever the source has any transparency; grayscale stays ``L``. An embedded
    ICC profile is applied (CMYK, wide-gamut RGB, gray) and dropped from the result; a
    profile that LittleCMS cannot use is ignored rather than failing the image. An image
    that needs nothing is returned as it is.
    """
    img = _to_base_mode(img)
    icc = img.info.get("icc_profile")
    if icc:
        img = _icc_to_srgb(img, icc)
    if img.mode == "CMYK":
        img = img.convert("RGB")
    elif img.mode == "LA":
        img = img.convert("RGBA")
    return img


def _to_base_mode(img: Image.Image) -> Image.Image:
    """Reduce every Pillow mode to 8-bit ``L``, ``LA``, ``RGB``, ``RGBA`` or ``CMYK``.

    ``convert`` keeps ``info``, so the ICC profile survives for ``_icc_to_srgb``.
    """
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _deep_gray_to_l(img)
    if mode in ("LA", "RGBA", "CMYK") or (mode in ("L", "RGB") and not img.has_transparency_data):
        return img
    target = "RGBA" if img.has_transparency_data else "L" if mode == "1" else "RGB"
    try:
        return img.convert(target)
    except ValueError as exc:
        raise UnsupportedImage(f"cannot convert image mode {mode} to {target}") from exc


def _deep_gray_to_l(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer gray to 8 bits (``I`` is read as 16-bit), float as 0.0–1.0.

    Pillow's own conversion clips everything above 255 to white instead of scaling.
    """
    values = np.asarray(img)
    if img.mode == "F":
        scaled = np.clip(values, 0.0, 1.0) * 255.0
    else:
        scaled = np.clip(values.astype(np.float64), 0, 65535) / 257.0
    gray = Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
    if icc := img.info.get("icc_profile"):
        gray.info["icc_profile"] = icc
    return gray


def _icc_to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Convert colours through the embedded profile to sRGB; return a copy without it.

    Alpha is split off first because LittleCMS only transforms colour channels; gray
    goes through RGB and back, since sRGB is an RGB profile.
    """
    alpha = img.getchannel("A") if img.mode in ("LA", "RGBA") else None
    colour = img.convert(img.mode[:-1]) if alpha is not None else img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(colour, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        out = img.copy()
    else:
        assert out is not None  # profileToProfile returns None only with inPlace=True
        if colour.mode == "L":
            out = out.convert("L")
        if alpha is not None:
            out.putalpha(alpha)
    out.info.pop("icc_profile", None)
    return out


def output_exif(img: Image.Image) -> bytes:
    """The EXIF block to write into an output of ``img``, orientation reset to 1; may be empty.

    Call it after ``orient``: the pixels are upright by then, so a kept orientation tag
    would make viewers turn them a second time.
    """
    exif = Image.Exif()
    try:
        exif.load(img.getexif().tobytes())
    except Exception:  # EXIF that Pillow cannot rewrite is dropped, not fatal
        return b""
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return exif.tobytes() if exif else b""


def flatten(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An RGBA or LA image composited onto an opaque ``background``, as RGB."""
    flat = Image.new("RGB", img.size, background)
    flat.paste(img.convert("RGBA"), mask=img.getchannel("A"))
    return flat


def encode(
    img: Image.Image,
    fmt: OutputFormat,
    *,
    quality: int,
    background: tuple[int, int, int] = (255, 255, 255),
    exif: bytes = b"",
) -> bytes:
    """Encode a working-mode image; metadata is never copied from ``img``, only ``exif``.

    Formats without alpha get the image flattened onto ``background``. Every option is
    fixed (AVIF on one thread), so the same pixels and arguments give the same bytes:
    outputs are stored under deterministic keys and a replay must not change them.
    """
    if not fmt.alpha and img.mode in ("RGBA", "LA"):
        img = flatten(img, background)
    options: dict[str, object] = {"exif": exif, "icc_profile": None}
    if fmt is JPEG:
        options.update(quality=quality, optimize=True, comment=b"")
    elif fmt is WEBP:
        options.update(quality=quality, method=4)
    elif fmt is AVIF:
        options.update(quality=quality, speed=6, max_threads=1)
    elif fmt is PNG:
        options.update(compress_level=PNG_COMPRESS_LEVEL)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt.pillow_format, **options)
    return buffer.getvalue()
