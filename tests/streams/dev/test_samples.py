"""The generated sample images are what the demo, tests and benchmarks say they are."""

from __future__ import annotations

import io

import numpy as np
from PIL import ExifTags, Image

from streams.dev.samples import make_photo, photo_jpeg, sample_set


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_make_photo_is_deterministic_and_varied() -> None:
    first, again, other = make_photo(320, 240, 1), make_photo(320, 240, 1), make_photo(320, 240, 2)
    assert first.mode == "RGB" and first.size == (320, 240)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    pixels = np.asarray(first, dtype=np.float64)
    assert pixels[:20].mean(axis=(0, 1))[2] > pixels[-20:].mean(axis=(0, 1))[2] + 40  # blue sky over ground
    assert pixels.std() > 20


def test_photo_jpeg_has_a_camera_like_size() -> None:
    data = photo_jpeg(800, 600, seed=0)
    img = opened(data)
    assert (img.format, img.size) == ("JPEG", (800, 600))
    assert 0.2 < len(data) / (800 * 600) < 1.0  # bytes per pixel of a detailed q90 photo
    assert data == photo_jpeg(800, 600, seed=0)


def test_sample_set_covers_the_awkward_cases() -> None:
    samples = {s.filename: s for s in sample_set()}
    assert len(samples) == 6
    images = {name: Image.open(io.BytesIO(s.data)) for name, s in samples.items()}
    formats = {name: (img.format, samples[name].content_type) for name, img in images.items()}
    assert formats == {
        "landscape-exif6.jpg": ("JPEG", "image/jpeg"),
        "portrait.jpg": ("JPEG", "image/jpeg"),
        "logo-alpha.png": ("PNG", "image/png"),
        "print-cmyk.jpg": ("JPEG", "image/jpeg"),
        "animated.gif": ("GIF", "image/gif"),
        "phone.heic": ("HEIF", "image/heic"),
    }
    assert images["landscape-exif6.jpg"].getexif()[ExifTags.Base.Orientation] == 6
    assert images["landscape-exif6.jpg"].size == (1200, 1600)  # stored turned; upright it is 1600×1200
    assert images["portrait.jpg"].height > images["portrait.jpg"].width
    assert images["portrait.jpg"].info.get("icc_profile")
    assert images["logo-alpha.png"].mode == "RGBA"
    assert set(np.unique(np.asarray(images["logo-alpha.png"].getchannel("A")))) >= {0, 128, 255}
    assert images["print-cmyk.jpg"].mode == "CMYK"
    assert getattr(images["animated.gif"], "n_frames", 1) == 3
    for name, img in images.items():
        assert 800 <= max(img.size) <= 2000, name
        img.load()
