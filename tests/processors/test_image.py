"""The shared image steps, checked on decoded pixels and sizes, never on our own bookkeeping."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from processors import errors
from processors.image import (
    AVIF,
    FORMATS,
    JPEG,
    PNG,
    WEBP,
    OutputFormat,
    decode,
    display_size,
    encode,
    load,
    open_image,
    orient,
    output_exif,
    to_srgb,
)
from processors.operation import Limits
from tests.processors.pixels import level, pixel, reopen, save

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width``×``height`` but that carries no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def icc_profile(space: str, trc_gamma: float, primaries: list[tuple[float, float, float]] | None = None) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile ("RGB " or "GRAY"), built by hand.

    Lets a test embed a profile that is *not* sRGB and see that its colours are honoured.
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in values)

    d50 = (0.9642, 1.0, 0.8249)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(trc_gamma * 256)) + b"\0\0"
    text = b"test profile\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags: list[tuple[bytes, bytes]] = [(b"desc", desc), (b"wtpt", xyz(d50))]
    if space == "GRAY":
        tags.append((b"kTRC", curve))
    else:
        assert primaries is not None
        tags += [(b"rXYZ", xyz(primaries[0])), (b"gXYZ", xyz(primaries[1])), (b"bXYZ", xyz(primaries[2]))]
        tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntr"
        + space.encode().ljust(4)
        + b"XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + b"".join(s15(v) for v in d50)
        + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


SRGB_D50_PRIMARIES = [(0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)]


# --- open / load / decode: limits and error translation -------------------------------


def test_decode_gives_the_first_frame_loaded() -> None:
    img = decode(save(Image.new("RGB", (30, 20), RED), "PNG"), Limits())
    assert img.size == (30, 20)
    assert pixel(img, 5, 5) == RED


@pytest.mark.parametrize(
    ("data", "limits", "error", "code"),
    [
        (b"", Limits(), errors.EmptyInput, "empty_input"),
        (b"not an image", Limits(), errors.NotAnImage, "not_an_image"),
        (png_header_only(30000, 30000), Limits(), errors.TooManyPixels, "too_many_pixels"),
        (bytes(2048), Limits(max_file_bytes=1024), errors.FileTooLarge, "file_too_large"),
    ],
    ids=["empty", "not-an-image", "pixel-bomb", "file-too-large"],
)
def test_bad_input_is_rejected_before_decoding(
    data: bytes, limits: Limits, error: type[errors.DarkroomError], code: str
) -> None:
    with pytest.raises(error) as caught:
        open_image(data, limits)
    assert caught.value.code == code
    assert caught.value.retryable is False


def test_pixel_bomb_header_is_tiny_and_rejected_by_declared_size() -> None:
    data = png_header_only(30000, 30000)
    assert len(data) < 100
    assert open_image(png_header_only(300, 300), Limits(max_pixels=90_000)).size == (300, 300)
    with pytest.raises(errors.TooManyPixels):
        open_image(png_header_only(301, 300), Limits(max_pixels=90_000))


def test_pillow_own_bomb_limit_does_not_override_ours() -> None:
    """150 MP is above Pillow's default error threshold but allowed by these limits."""
    assert open_image(png_header_only(15000, 10000), Limits(max_pixels=200_000_000)).size == (15000, 10000)


def test_too_many_frames() -> None:
    frames = [Image.new("RGB", (8, 8), (60 * i, 0, 0)) for i in range(4)]
    gif = save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert getattr(open_image(gif, Limits(max_frames=4)), "n_frames", 1) == 4
    with pytest.raises(errors.TooManyFrames) as caught:
        open_image(gif, Limits(max_frames=3))
    assert caught.value.code == "too_many_frames"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_truncated_image(fmt: str) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = save(noisy if fmt != "GIF" else noisy.convert("P"), fmt)
    img = open_image(data[: len(data) // 2], Limits())
    with pytest.raises(errors.TruncatedImage) as caught:
        load(img)
    assert caught.value.code == "truncated_image"


def test_load_with_draft_decodes_jpeg_reduced_but_covering_the_size() -> None:
    data = save(Image.new("RGB", (1600, 1200), BLUE), "JPEG")
    assert load(open_image(data, Limits()), draft_size=(400, 300)).size == (400, 300)
    assert load(open_image(data, Limits()), draft_size=(401, 300)).size == (800, 600)
    png = save(Image.new("RGB", (1600, 1200), BLUE), "PNG")
    assert load(open_image(png, Limits()), draft_size=(400, 300)).size == (1600, 1200)


# --- orient ---------------------------------------------------------------------------


def exif_with_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = value
    exif[ExifTags.Base.Make] = "TestCam"
    return exif


def test_orient_turns_pixels_and_display_size_predicts_it() -> None:
    stored = Image.new("RGB", (200, 100), BLUE)
    stored.paste(RED, (0, 0, 40, 40))  # stored top-left
    opened = open_image(save(stored, "PNG", exif=exif_with_orientation(6)), Limits())
    assert display_size(opened) == (100, 200)
    upright = orient(load(opened))
    assert upright.size == (100, 200)
    # Orientation 6: turn 90° clockwise to display, so stored top-left lands top-right.
    assert pixel(upright, 95, 5) == RED
    assert pixel(upright, 5, 5) == BLUE
    assert ExifTags.Base.Orientation not in upright.getexif()


def test_orient_leaves_upright_images_alone() -> None:
    img = decode(save(Image.new("RGB", (20, 10)), "PNG"), Limits())
    assert orient(img) is img


def test_output_exif_keeps_tags_and_resets_orientation() -> None:
    img = orient(decode(save(Image.new("RGB", (20, 10)), "JPEG", exif=exif_with_orientation(8)), Limits()))
    kept = Image.Exif()
    kept.load(output_exif(img))
    assert kept[ExifTags.Base.Make] == "TestCam"
    assert kept.get(ExifTags.Base.Orientation, 1) == 1
    assert output_exif(Image.new("RGB", (2, 2))) == b""


# --- to_srgb --------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb_with_sane_colours() -> None:
    cmyk = Image.new("CMYK", (64, 32), (0, 255, 255, 0))  # red ink mix
    cmyk.paste((0, 0, 0, 255), (32, 0, 64, 32))  # black ink
    img = to_srgb(decode(save(cmyk, "JPEG", quality=95), Limits()))
    assert img.mode == "RGB"
    assert np.abs(np.subtract(pixel(img, 8, 16), RED)).max() <= 12
    assert max(pixel(img, 56, 16)) <= 12


def test_16_bit_gray_is_scaled_not_clipped() -> None:
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    img = to_srgb(decode(save(Image.fromarray(values), "PNG"), Limits()))
    assert img.mode == "L"
    assert list(np.asarray(img)[0]) == [0, 128, 255, 4]


def test_32_bit_and_float_gray_are_scaled() -> None:
    assert level(to_srgb(Image.fromarray(np.array([[32768]], dtype=np.int32))), 0, 0) == 128
    assert to_srgb(Image.fromarray(np.array([[0.5, 2.0]], dtype=np.float32))).tobytes() == bytes([128, 255])


@pytest.mark.parametrize(
    ("mode", "expected_mode"),
    [("1", "L"), ("L", "L"), ("LA", "RGBA"), ("P", "RGB"), ("PA", "RGBA"), ("RGBX", "RGB"), ("YCbCr", "RGB")],
)
def test_every_mode_reaches_a_working_mode(mode: str, expected_mode: str) -> None:
    assert to_srgb(Image.new(mode, (4, 4))).mode == expected_mode


def test_palette_with_transparency_keeps_alpha() -> None:
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(0, (0, 0, 5, 10))
    converted = to_srgb(decode(save(img, "PNG", transparency=0), Limits()))
    assert converted.mode == "RGBA"
    assert pixel(converted, 2, 2)[3] == 0
    assert pixel(converted, 7, 2) == (255, 0, 0, 255)


def test_embedded_rgb_profile_is_applied_and_dropped() -> None:
    """A profile with red and green primaries swapped: stored red *means* green."""
    swapped = [SRGB_D50_PRIMARIES[1], SRGB_D50_PRIMARIES[0], SRGB_D50_PRIMARIES[2]]
    data = save(Image.new("RGB", (8, 8), RED), "PNG", icc_profile=icc_profile("RGB ", 2.2, swapped))
    img = to_srgb(decode(data, Limits()))
    assert img.mode == "RGB"
    assert np.abs(np.subtract(pixel(img, 0, 0), GREEN)).max() <= 6
    assert "icc_profile" not in img.info


def test_embedded_profile_with_alpha_keeps_alpha() -> None:
    swapped = [SRGB_D50_PRIMARIES[1], SRGB_D50_PRIMARIES[0], SRGB_D50_PRIMARIES[2]]
    data = save(Image.new("RGBA", (8, 8), (255, 0, 0, 100)), "PNG", icc_profile=icc_profile("RGB ", 2.2, swapped))
    r, g, b, a = pixel(to_srgb(decode(data, Limits())), 0, 0)
    assert (r < 10, g > 245, b < 10, a) == (True, True, True, 100)


def test_embedded_gray_profile_is_applied_and_gray_stays_gray() -> None:
    """A linear (gamma 1.0) gray profile: stored 128 is half the light, sRGB ~188."""
    data = save(Image.new("L", (8, 8), 128), "PNG", icc_profile=icc_profile("GRAY", 1.0))
    img = to_srgb(decode(data, Limits()))
    assert img.mode == "L"
    assert 184 <= level(img, 0, 0) <= 192


def test_srgb_profile_changes_nothing_visible() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = to_srgb(decode(save(Image.new("RGB", (8, 8), (10, 120, 240)), "PNG", icc_profile=srgb), Limits()))
    assert np.abs(np.subtract(pixel(img, 0, 0), (10, 120, 240))).max() <= 2


def test_broken_profile_falls_back_to_plain_conversion() -> None:
    cmyk = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", icc_profile=b"definitely not a profile")
    img = to_srgb(decode(cmyk, Limits()))
    assert img.mode == "RGB"
    assert np.abs(np.subtract(pixel(img, 4, 4), RED)).max() <= 12
    assert "icc_profile" not in img.info


# --- encode ---------------------------------------------------------------------------


def test_format_table() -> None:
    assert FORMATS["jpg"] is FORMATS["jpeg"] is JPEG
    assert [(f.content_type, f.extension) for f in (JPEG, WEBP, AVIF, PNG)] == [
        ("image/jpeg", "jpg"),
        ("image/webp", "webp"),
        ("image/avif", "avif"),
        ("image/png", "png"),
    ]


@pytest.mark.parametrize("fmt", [JPEG, WEBP, AVIF, PNG], ids=lambda f: f.name)
def test_encode_decodes_back_without_metadata_and_deterministically(fmt: OutputFormat) -> None:
    source = Image.new("RGB", (64, 48), (30, 140, 200))
    source.info.update(
        comment=b"secret", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    )
    source.info["exif"] = exif_with_orientation(1).tobytes()
    data = encode(source, fmt, quality=80)
    assert data == encode(source, fmt, quality=80)
    back = reopen(data)
    assert back.format == fmt.pillow_format
    assert back.size == (64, 48)
    assert dict(back.getexif()) == {}
    assert not {"icc_profile", "comment", "xmp", "exif"} & set(back.info)
    assert np.abs(np.subtract(pixel(back.convert("RGB"), 32, 24), (30, 140, 200))).max() <= 8


def test_jpeg_flattens_alpha_onto_the_background() -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (16, 0, 32, 32))
    back = reopen(encode(img, JPEG, quality=95, background=(255, 0, 0)))
    assert back.mode == "RGB"
    assert np.abs(np.subtract(pixel(back, 4, 16), RED)).max() <= 10
    assert np.abs(np.subtract(pixel(back, 28, 16), BLUE)).max() <= 10


@pytest.mark.parametrize("fmt", [WEBP, AVIF, PNG], ids=lambda f: f.name)
def test_alpha_survives_formats_that_hold_it(fmt: OutputFormat) -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (16, 0, 32, 32))
    back = reopen(encode(img, fmt, quality=90)).convert("RGBA")
    assert pixel(back, 4, 16)[3] <= 5
    assert pixel(back, 28, 16)[3] >= 250


def test_exif_is_written_only_when_given() -> None:
    img = Image.new("RGB", (16, 16))
    exif = exif_with_orientation(1).tobytes()
    for fmt in (JPEG, WEBP, PNG, AVIF):
        kept = reopen(encode(img, fmt, quality=80, exif=exif)).getexif()
        assert kept[ExifTags.Base.Make] == "TestCam", fmt.name
