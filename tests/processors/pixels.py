"""Pixel-level helpers shared by the processor tests."""

from __future__ import annotations

import io

from PIL import Image

from processors.operation import Rendition


def save(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pixel(img: Image.Image, x: int, y: int) -> tuple[int, ...]:
    """``getpixel`` for multi-band images, typed."""
    value = img.getpixel((x, y))
    assert isinstance(value, tuple)
    return value


def level(img: Image.Image, x: int, y: int) -> int:
    """``getpixel`` for single-band images, typed."""
    value = img.getpixel((x, y))
    assert isinstance(value, int)
    return value


def reopen(encoded: bytes | Rendition) -> Image.Image:
    """Decode an output the way a user would, fully loaded."""
    img = Image.open(io.BytesIO(encoded.data if isinstance(encoded, Rendition) else encoded))
    img.load()
    return img
