"""Photo-like sample images for ``darkroom demo``, the tests and the benchmarks.

Generated, not stored: a repository without binary fixtures, and inputs of any size on
demand. Each image is a deterministic function of its arguments: a sky and ground
gradient under a hilly horizon, a sun, some buildings and trees, and film grain, so
that codecs spend realistic effort and bytes on them (a flat synthetic image would
make thumbnails look faster and smaller than they are).

Pure generation: nothing here touches Kafka or object storage.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageDraw

pillow_heif.register_heif_opener()


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One input file as a producer would upload it."""

    filename: str
    data: bytes
    content_type: str


def make_photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB image; about half a second for 4000×3000.

    Gradients are computed at 1/8 scale and enlarged, and everything else is drawn or
    combined by Pillow in C: full-size float arrays would take seconds at 12 megapixels.
    """
    rng = np.random.default_rng(seed)
    sky = _gradient((60, 110, 190), (205, 220, 235), width, height)
    ground = _gradient((110, 135, 70), (35, 60, 20), width, height)
    xs = np.linspace(0.0, 1.0, max(2, width // 8))
    phases = rng.uniform(0, 2 * np.pi, 2)
    horizon = height * (0.5 + 0.06 * np.sin(2.5 * np.pi * xs + phases[0]) + 0.03 * np.sin(9 * np.pi * xs + phases[1]))
    land = Image.new("L", (width, height), 0)
    outline = [(float(x), float(y)) for x, y in zip(xs * width, horizon, strict=True)]
    ImageDraw.Draw(land).polygon([*outline, (width, height), (0, height)], fill=255)
    sky.paste(ground, mask=land)
    _draw_scene(ImageDraw.Draw(sky), width, height, rng)

    # Light and shade around 128 at two scales, plus per-pixel grain shared by all channels.
    texture = Image.fromarray(rng.integers(122, 135, (height, width), dtype=np.uint8), mode="L")
    for cell, sigma in ((24, 5.0), (160, 9.0)):
        grid = rng.normal(128, sigma, (height // cell + 2, width // cell + 2))
        blotches = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), mode="L")
        texture = ImageChops.add(texture, blotches.resize((width, height), Image.Resampling.BICUBIC), offset=-128)
    return ImageChops.add(sky, Image.merge("RGB", (texture, texture, texture)), offset=-128)


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], width: int, height: int) -> Image.Image:
    """A vertical colour gradient, computed at 1/8 height and enlarged."""
    t = np.linspace(0.0, 1.0, max(2, height // 8))[:, None]
    rows = np.array(top) + (np.array(bottom) - np.array(top)) * t
    strip = Image.fromarray(np.rint(rows).astype(np.uint8)[:, None, :], mode="RGB")
    return strip.resize((width, height), Image.Resampling.BILINEAR)


def _draw_scene(draw: ImageDraw.ImageDraw, width: int, height: int, rng: np.random.Generator) -> None:
    unit = min(width, height)
    sun_x, sun_y, sun_r = rng.uniform(0.1, 0.9) * width, rng.uniform(0.08, 0.25) * height, unit * 0.05
    for grow, colour in ((2.2, (235, 225, 200)), (1.5, (250, 240, 210)), (1.0, (255, 250, 230))):
        r = sun_r * grow
        draw.ellipse((sun_x - r, sun_y - r, sun_x + r, sun_y + r), fill=colour)
    ground_y = int(height * 0.62)
    for _ in range(int(rng.integers(4, 9))):
        w, h = rng.uniform(0.04, 0.12) * width, rng.uniform(0.08, 0.3) * height
        x = rng.uniform(0, width - w)
        grey = int(rng.integers(90, 200))
        draw.rectangle((x, ground_y - h, x + w, ground_y + 0.05 * height), fill=(grey, grey - 10, grey - 25))
        for row in np.arange(ground_y - h + 0.03 * unit, ground_y, 0.05 * unit):
            draw.rectangle((x + 0.2 * w, row, x + 0.4 * w, row + 0.02 * unit), fill=(250, 230, 150))
    for _ in range(int(rng.integers(6, 14))):
        x, y, r = rng.uniform(0, width), rng.uniform(0.65, 0.95) * height, rng.uniform(0.02, 0.06) * unit
        draw.ellipse((x - r, y - 2 * r, x + r, y), fill=(30, int(rng.integers(70, 110)), 30))
        draw.rectangle((x - r * 0.15, y, x + r * 0.15, y + r * 0.6), fill=(70, 50, 30))


def photo_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    """``make_photo`` as a camera-like JPEG (4:2:0), e.g. 4000×3000 for benchmarks."""
    buffer = io.BytesIO()
    make_photo(width, height, seed).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rotated_landscape() -> bytes:
    """A landscape as a phone held sideways stores it: pixels turned, EXIF orientation 6."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "darkroom"
    stored = make_photo(1600, 1200, seed=1).transpose(Image.Transpose.ROTATE_90)
    return _save(stored, "JPEG", quality=88, exif=exif)


def _logo_with_alpha() -> bytes:
    """An RGBA cut-out: opaque ellipse, half-transparent band, fully transparent outside."""
    width, height = 1000, 800
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((100, 80, 900, 720), fill=255)
    draw.rectangle((0, 360, width, 440), fill=128)
    img = make_photo(width, height, seed=3).convert("RGBA")
    img.putalpha(mask)
    return _save(img, "PNG")


def _animation() -> bytes:
    frames = [make_photo(800, 600, seed=10 + i).convert("P", palette=Image.Palette.ADAPTIVE) for i in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)


def sample_set() -> list[Sample]:
    """Six varied uploads (orientation, ICC, alpha, CMYK, animation, HEIC), 800–1800 px."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return [
        Sample(filename="landscape-exif6.jpg", data=_rotated_landscape(), content_type="image/jpeg"),
        Sample(
            filename="portrait.jpg",
            data=_save(make_photo(1200, 1800, seed=2), "JPEG", quality=90, icc_profile=srgb),
            content_type="image/jpeg",
        ),
        Sample(filename="logo-alpha.png", data=_logo_with_alpha(), content_type="image/png"),
        Sample(
            filename="print-cmyk.jpg",
            data=_save(make_photo(1400, 1000, seed=4).convert("CMYK"), "JPEG", quality=90),
            content_type="image/jpeg",
        ),
        Sample(filename="animated.gif", data=_animation(), content_type="image/gif"),
        Sample(
            filename="phone.heic",
            data=_save(make_photo(1600, 1200, seed=5), "HEIF", quality=80),
            content_type="image/heic",
        ),
    ]
