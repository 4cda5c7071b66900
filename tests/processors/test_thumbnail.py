"""The thumbnail operation end to end: params in, decoded renditions checked pixel by pixel."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageOps
from skimage import data as skimage_data

from processors import errors, focus, get_operation
from processors.operation import Limits, Rendition
from processors.thumbnail import THUMBNAIL, Box, ThumbnailParams
from tests.processors.pixels import level, pixel, reopen, save
from tests.processors.test_focus import astronaut_in, inside, with_photo

RED, BLUE = (255, 0, 0), (0, 0, 255)


def thumbnails(data: bytes, limits: Limits | None = None, **params: str) -> list[Rendition]:
    return THUMBNAIL.run(data, THUMBNAIL.parse_params(params), limits or Limits()).renditions


def noisy(width: int, height: int, seed: int = 0) -> Image.Image:
    """Detail at every scale, so any loss of resolution shows up in pixel differences."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> None:
    assert np.abs(np.subtract(actual, expected)).max() <= tolerance, (actual, expected)


# --- params ---------------------------------------------------------------------------


def test_is_the_registered_operation() -> None:
    assert get_operation("thumbnail") is THUMBNAIL
    assert (THUMBNAIL.name, THUMBNAIL.version) == ("thumbnail", "2")


def test_defaults_and_canonical_form() -> None:
    params = THUMBNAIL.parse_params({})
    assert params == ThumbnailParams()
    assert THUMBNAIL.canonical_params(params) == {
        "background": "ffffff",
        "fit": "contain",
        "format": "auto",
        "quality": "82",
        "sizes": "256",
        "strip": "true",
        "upscale": "false",
    }


def test_canonical_form_normalises_spellings() -> None:
    params = THUMBNAIL.parse_params(
        {"sizes": "400x300+0128x128+64", "format": "jpg", "background": "FF00aa", "upscale": "true"}
    )
    assert params.sizes == (Box(400, 300), Box(128, 128), Box(64, 64))
    canonical = THUMBNAIL.canonical_params(params)
    assert (canonical["sizes"], canonical["format"], canonical["background"]) == ("400x300+128+64", "jpeg", "ff00aa")
    assert THUMBNAIL.parse_params(canonical) == params


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"size": "256"}, "size"),
        ({"sizes": "0"}, "sizes"),
        ({"sizes": "16385"}, "sizes"),
        ({"sizes": "256+256x256"}, "sizes"),
        ({"sizes": "+".join(str(n) for n in range(1, 18))}, "sizes"),
        ({"sizes": "256x"}, "sizes"),
        ({"sizes": " 256"}, "sizes"),
        ({"sizes": ""}, "sizes"),
        ({"quality": "101"}, "quality"),
        ({"quality": "0"}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"fit": "bogus"}, "fit"),
        ({"format": "bmp"}, "format"),
        ({"strip": "yes"}, "strip"),
        ({"upscale": "1"}, "upscale"),
        ({"background": "fff"}, "background"),
    ],
)
def test_invalid_params_name_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(errors.InvalidParameters) as caught:
        THUMBNAIL.parse_params(raw)
    assert caught.value.code == "invalid_parameters"
    assert key in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sixteen_sizes_are_allowed() -> None:
    assert len(THUMBNAIL.parse_params({"sizes": "+".join(str(n) for n in range(1, 17))}).sizes) == 16


# --- geometry -------------------------------------------------------------------------


def test_contain_sizes_fit_their_boxes_in_the_order_given() -> None:
    out = thumbnails(save(noisy(1200, 900), "JPEG"), sizes="256+400x300+100x400")
    assert [(r.name, r.width, r.height) for r in out] == [
        ("thumb-256", 256, 192),
        ("thumb-400x300", 400, 300),
        ("thumb-100x400", 100, 75),
    ]
    for rendition in out:
        assert reopen(rendition).size == (rendition.width, rendition.height)
        assert (rendition.content_type, rendition.extension) == ("image/jpeg", "jpg")


def test_cover_fills_each_box_exactly() -> None:
    out = thumbnails(save(noisy(1200, 900), "PNG"), sizes="256+400x300+100x400", fit="cover", format="png")
    assert [(r.name, reopen(r).size) for r in out] == [
        ("thumb-256-cover", (256, 256)),
        ("thumb-400x300-cover", (400, 300)),
        ("thumb-100x400-cover", (100, 400)),
    ]


def test_cover_crops_the_centre() -> None:
    """A wide image with red side bands: a square cover crop shows only the blue middle."""
    img = Image.new("RGB", (300, 100), BLUE)
    img.paste(RED, (0, 0, 100, 100))
    img.paste(RED, (200, 0, 300, 100))
    (out,) = thumbnails(save(img, "PNG"), sizes="50", fit="cover", format="png")
    thumb = reopen(out)
    assert thumb.size == (50, 50)
    for x in (2, 25, 47):
        assert_close(pixel(thumb, x, 25), BLUE, tolerance=3)


def test_never_upscales_unless_asked() -> None:
    data = save(noisy(200, 100), "PNG")
    assert [(r.width, r.height) for r in thumbnails(data, sizes="256+400x300")] == [(200, 100), (200, 100)]
    assert [(r.width, r.height) for r in thumbnails(data, sizes="256", upscale="true")] == [(256, 128)]
    # cover without upscale: the box shrinks, keeping its shape, until the source fills it
    out = thumbnails(data, sizes="400x300+50", fit="cover")
    assert [reopen(r).size for r in out] == [(133, 100), (50, 50)]
    assert reopen(thumbnails(data, sizes="400x300", fit="cover", upscale="true")[0]).size == (400, 300)


def test_tiny_outputs_keep_at_least_one_pixel() -> None:
    (out,) = thumbnails(save(noisy(1000, 10), "PNG"), sizes="50")
    assert (out.width, out.height) == (50, 1)


# --- orientation and draft ------------------------------------------------------------


def oriented_jpeg(orientation: int) -> bytes:
    stored = Image.new("RGB", (200, 100), BLUE)
    stored.paste(RED, (0, 0, 40, 40))  # stored top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    return save(stored, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied() -> None:
    (out,) = thumbnails(oriented_jpeg(6), format="png")
    thumb = reopen(out)
    assert thumb.size == (out.width, out.height) == (100, 200)
    # Orientation 6 turns 90° clockwise: stored top-left lands top-right.
    assert_close(pixel(thumb, 90, 10), RED)
    assert_close(pixel(thumb, 10, 10), BLUE)
    assert_close(pixel(thumb, 90, 190), BLUE)


def test_orientation_is_applied_before_fitting_a_box() -> None:
    (out,) = thumbnails(oriented_jpeg(6), sizes="50x50")
    assert (out.width, out.height) == (25, 50)
    (out,) = thumbnails(oriented_jpeg(1), sizes="50x50")
    assert (out.width, out.height) == (50, 25)


def detailed_jpeg(orientation: int = 1) -> bytes:
    """2000×1500 of detail about 3 px across: what a draft one step too small would lose."""
    rng = np.random.default_rng(7)
    coarse = Image.fromarray(rng.integers(0, 256, (500, 667, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return save(coarse.resize((2000, 1500), Image.Resampling.BICUBIC), "JPEG", quality=95, exif=exif)


def difference_from_full_decode(data: bytes, thumb: Image.Image) -> float:
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    reference = np.asarray(full.resize(thumb.size, Image.Resampling.LANCZOS), dtype=np.float64)
    return float(np.abs(np.asarray(thumb, dtype=np.float64) - reference).mean())


@pytest.mark.parametrize("orientation", [1, 6])
def test_draft_keeps_the_resolution_the_largest_output_needs(orientation: int) -> None:
    """Close to a full decode + orient + Lanczos although the JPEG is drafted (to 1/2 here)."""
    data = detailed_jpeg(orientation)
    out = thumbnails(data, sizes="160+900x900", format="png")
    expected = [(160, 120), (900, 675)] if orientation == 1 else [(120, 160), (675, 900)]
    assert [(r.width, r.height) for r in out] == expected
    for rendition in out:
        assert difference_from_full_decode(data, reopen(rendition)) < 14, rendition.name


def test_a_draft_one_step_too_small_would_be_seen() -> None:
    """The check above can fail: decoding at 1/4 for a 900 px output misses detail."""
    data = detailed_jpeg()
    drafted = Image.open(io.BytesIO(data))
    drafted.draft(None, (500, 375))
    enlarged = drafted.resize((900, 675), Image.Resampling.LANCZOS)
    assert difference_from_full_decode(data, enlarged) > 14


# --- metadata -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_metadata_is_stripped_by_default(fmt: str) -> None:
    img = noisy(64, 64)
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    data = save(img, "JPEG", exif=exif, comment=b"private", xmp=b"<x:xmpmeta>secret</x:xmpmeta>")
    (out,) = thumbnails(data, sizes="32", format=fmt)
    thumb = reopen(out)
    assert dict(thumb.getexif()) == {}
    assert not {"exif", "xmp", "comment", "icc_profile"} & set(thumb.info)
    assert b"TestCam" not in out.data and b"secret" not in out.data and b"private" not in out.data


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_exif_is_kept_with_strip_false_and_orientation_reset(fmt: str) -> None:
    (out,) = thumbnails(oriented_jpeg(6), strip="false", format=fmt)
    thumb = reopen(out)
    assert thumb.getexif()[ExifTags.Base.Make] == "TestCam"
    assert thumb.getexif().get(ExifTags.Base.Orientation, 1) == 1
    assert thumb.size == (100, 200)  # turned once, by us; viewers must not turn it again


# --- colour and modes -----------------------------------------------------------------


def test_cmyk_jpeg_gives_rgb_with_sane_colours() -> None:
    cmyk = Image.new("CMYK", (200, 100), (0, 255, 255, 0))
    cmyk.paste((255, 0, 0, 0), (100, 0, 200, 100))  # cyan
    (out,) = thumbnails(save(cmyk, "JPEG", quality=95), sizes="100", format="png")
    thumb = reopen(out)
    assert thumb.mode == "RGB"
    assert_close(pixel(thumb, 10, 25), RED)
    assert_close(pixel(thumb, 90, 25), (0, 255, 255))


def test_16_bit_grayscale_png_is_scaled_not_clipped() -> None:
    gray = Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))
    assert gray.mode.startswith("I;16")
    (out,) = thumbnails(save(gray, "PNG"), sizes="20", format="png")
    thumb = reopen(out)
    assert thumb.mode == "L"
    assert abs(level(thumb, 10, 10) - 128) <= 1


def palette_with_transparency() -> bytes:
    img = Image.new("P", (40, 40), 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(0, (0, 0, 20, 40))  # left half: the transparent index
    return save(img, "PNG", transparency=0)


def test_palette_transparency_kept_as_alpha_in_png() -> None:
    (out,) = thumbnails(palette_with_transparency(), sizes="20", format="png")
    thumb = reopen(out)
    assert thumb.mode == "RGBA"
    assert pixel(thumb, 2, 10)[3] == 0
    assert pixel(thumb, 17, 10) == (0, 0, 255, 255)


@pytest.mark.parametrize("fmt", ["webp", "avif"])
def test_alpha_kept_in_webp_and_avif(fmt: str) -> None:
    (out,) = thumbnails(palette_with_transparency(), sizes="20", format=fmt)
    thumb = reopen(out).convert("RGBA")
    assert thumb.size == (20, 20)
    assert pixel(thumb, 2, 10)[3] <= 5
    assert pixel(thumb, 17, 10)[3] >= 250


def test_jpeg_flattens_transparency_onto_the_background() -> None:
    (out,) = thumbnails(palette_with_transparency(), sizes="20", background="ff0000", format="jpeg")
    thumb = reopen(out)
    assert thumb.mode == "RGB"
    assert_close(pixel(thumb, 2, 10), RED)
    assert_close(pixel(thumb, 17, 10), BLUE)
    (white,) = thumbnails(palette_with_transparency(), sizes="20", format="jpeg")
    assert_close(pixel(reopen(white), 2, 10), (255, 255, 255))


# --- inputs and outputs ---------------------------------------------------------------


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (60, 40), colour) for colour in (RED, (0, 255, 0), BLUE)]
    gif = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (out,) = thumbnails(gif, sizes="30", format="png")
    thumb = reopen(out)
    assert thumb.size == (30, 20)
    assert_close(pixel(thumb.convert("RGB"), 15, 10), RED, tolerance=2)


def test_heic_input() -> None:
    assert pillow_heif.__version__  # the opener is registered by processors.image
    img = Image.new("RGB", (320, 240), BLUE)
    img.paste(RED, (0, 0, 160, 240))
    (out,) = thumbnails(save(img, "HEIF", quality=90), sizes="160", format="png")
    thumb = reopen(out)
    assert thumb.size == (160, 120)
    assert_close(pixel(thumb, 20, 60), RED, tolerance=20)
    assert_close(pixel(thumb, 140, 60), BLUE, tolerance=20)


@pytest.mark.parametrize(
    ("fmt", "pillow_format", "content_type", "extension"),
    [
        ("jpeg", "JPEG", "image/jpeg", "jpg"),
        ("jpg", "JPEG", "image/jpeg", "jpg"),
        ("webp", "WEBP", "image/webp", "webp"),
        ("avif", "AVIF", "image/avif", "avif"),
        ("png", "PNG", "image/png", "png"),
    ],
)
def test_output_formats(fmt: str, pillow_format: str, content_type: str, extension: str) -> None:
    out = thumbnails(save(noisy(300, 200), "PNG"), sizes="120+50x50", format=fmt, quality="70")
    for rendition in out:
        thumb = reopen(rendition)
        assert thumb.format == pillow_format
        assert thumb.size == (rendition.width, rendition.height)
        assert (rendition.content_type, rendition.extension) == (content_type, extension)
    assert [(r.width, r.height) for r in out] == [(120, 80), (50, 33)]


def test_quality_changes_the_bytes() -> None:
    data = save(noisy(300, 200), "PNG")
    low, high = (thumbnails(data, sizes="200", quality=q)[0] for q in ("20", "95"))
    assert len(low.data) < len(high.data)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_same_input_and_params_give_the_same_bytes(fmt: str) -> None:
    data = save(noisy(400, 300), "JPEG")
    first = thumbnails(data, sizes="128+64x64", format=fmt, strip="false")
    second = thumbnails(data, sizes="128+64x64", format=fmt, strip="false")
    assert [r.data for r in first] == [r.data for r in second]


def test_bad_inputs_fail_with_their_codes() -> None:
    truncated = save(noisy(200, 200), "JPEG")
    frames = [Image.new("RGB", (8, 8), (80 * i, 0, 0)) for i in range(3)]
    gif = save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    cases = [
        (b"", Limits(), errors.EmptyInput),
        (b"not an image", Limits(), errors.NotAnImage),
        (truncated[: len(truncated) // 2], Limits(), errors.TruncatedImage),
        (truncated, Limits(max_file_bytes=len(truncated) - 1), errors.FileTooLarge),
        (truncated, Limits(max_pixels=200 * 200 - 1), errors.TooManyPixels),
        (gif, Limits(max_frames=2), errors.TooManyFrames),
    ]
    for data, limits, error in cases:
        with pytest.raises(error) as caught:
            thumbnails(data, limits)
        assert caught.value.code == error.code
        assert not caught.value.retryable


def test_format_auto_keeps_transparency_as_png_and_writes_opaque_images_as_jpeg() -> None:
    (kept,) = thumbnails(palette_with_transparency(), sizes="20")
    assert (kept.content_type, kept.extension) == ("image/png", "png")
    assert reopen(kept).mode == "RGBA" and pixel(reopen(kept), 2, 10)[3] == 0
    opaque_rgba = Image.new("RGBA", (40, 30), (10, 200, 30, 255))  # an alpha channel, every pixel opaque
    for source in (save(noisy(300, 200), "PNG"), save(opaque_rgba, "PNG")):
        (out,) = thumbnails(source, sizes="20")
        assert (out.content_type, out.extension) == ("image/jpeg", "jpg")
        assert reopen(out).format == "JPEG"


# --- gravity --------------------------------------------------------------------------


def test_gravity_is_in_the_key_only_where_it_changes_the_bytes() -> None:
    default_cover = THUMBNAIL.canonical_params(THUMBNAIL.parse_params({"fit": "cover"}))
    assert "gravity" not in default_cover  # centre: the keys outputs had before gravity existed
    assert THUMBNAIL.plan(b"", THUMBNAIL.parse_params({"fit": "cover"}), Limits()) == {}
    chosen = THUMBNAIL.parse_params({"fit": "cover", "gravity": "noea"})
    assert THUMBNAIL.canonical_params(chosen) == {**default_cover, "gravity": "northeast"}
    assert THUMBNAIL.parse_params(THUMBNAIL.canonical_params(chosen)) == chosen
    # contain crops nothing, so every gravity is the same request
    assert THUMBNAIL.parse_params({"gravity": "face"}) == THUMBNAIL.parse_params({})
    # the face detector decides the bytes of face-seeking crops: it is part of their identity
    seeking = THUMBNAIL.plan(b"", THUMBNAIL.parse_params({"fit": "cover", "gravity": "auto"}), Limits())
    assert seeking == {"face_detector": focus.face_detector()}


def test_an_unknown_gravity_names_the_key() -> None:
    with pytest.raises(errors.InvalidParameters, match="gravity"):
        THUMBNAIL.parse_params({"fit": "cover", "gravity": "top"})


@pytest.mark.parametrize(
    ("gravity", "size", "offset"),
    [
        ("west", "100x200", (0, 0)),
        ("centre", "100x200", (100, 0)),
        ("ea", "100x200", (200, 0)),
        ("north", "300x100", (0, 0)),
        ("so", "300x100", (0, 100)),
        ("southeast", "200x200", (100, 0)),
        ("nowe", "200x200", (0, 0)),
        ("southwest", "300x150", (0, 50)),
    ],
)
def test_compass_gravity_crops_at_exact_offsets(gravity: str, size: str, offset: tuple[int, int]) -> None:
    source = noisy(300, 200, seed=3)
    (out,) = thumbnails(save(source, "PNG"), sizes=size, fit="cover", format="png", gravity=gravity)
    width, height = (int(side) for side in size.split("x"))
    expected = source.crop((offset[0], offset[1], offset[0] + width, offset[1] + height))
    assert np.array_equal(np.asarray(reopen(out)), np.asarray(expected))  # no resampling at scale 1


def crop_window(source: Image.Image, out: Image.Image) -> tuple[float, float, float, float]:
    """Where in ``source`` a cover output came from, found by matching its pixels."""
    import cv2

    scale = max(out.width / source.width, out.height / source.height)
    scaled = source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS)
    scores = cv2.matchTemplate(np.asarray(scaled), np.asarray(out.convert("RGB")), cv2.TM_SQDIFF)
    _, _, (x, y), _ = cv2.minMaxLoc(scores)
    return (x / scale, y / scale, (x + out.width) / scale, (y + out.height) / scale)


@pytest.mark.parametrize(
    ("canvas_size", "at", "side"),
    [((1600, 600), (1100, 50), 500), ((600, 1600), (50, 1050), 500), ((2400, 1200), (1500, 100), 1000)],
)
@pytest.mark.parametrize("gravity", ["auto", "face"])
def test_face_gravity_keeps_the_face_in_every_crop(
    canvas_size: tuple[int, int], at: tuple[int, int], side: int, gravity: str
) -> None:
    img, face = astronaut_in(canvas_size, at, side)
    data = save(img, "JPEG", quality=92)
    sizes = "300+240x300+320x180"  # 1:1, 4:5, 16:9
    outs = thumbnails(data, sizes=sizes, fit="cover", format="png", gravity=gravity)
    centred = thumbnails(data, sizes=sizes, fit="cover", format="png")
    details = THUMBNAIL.run(
        data, THUMBNAIL.parse_params({"sizes": sizes, "fit": "cover", "gravity": gravity}), Limits()
    ).details
    assert (details["gravity"], details["focus"], details["faces"]) == (gravity, "face", "1")
    kept = 0
    for out, centre in zip(outs, centred, strict=True):
        window = crop_window(img, reopen(out))
        assert inside(face, window, slack=2), (out.name, window, face)
        kept += inside(face, crop_window(img, reopen(centre)), slack=2)
    assert kept < len(outs)  # the centre crop loses the face in some: the test can tell them apart


def test_auto_without_a_face_keeps_the_subject() -> None:
    img, subject = with_photo((2000, 800), skimage_data.chelsea(), (1450, 450), 400)
    data = save(img, "JPEG", quality=92)
    result = THUMBNAIL.run(data, THUMBNAIL.parse_params({"sizes": "400", "fit": "cover", "gravity": "auto"}), Limits())
    assert (result.details["focus"], result.details["faces"]) == ("attention", "0")
    assert inside(subject, crop_window(img, reopen(result.renditions[0])), slack=2)
    (centre,) = thumbnails(data, sizes="400", fit="cover")
    assert not inside(subject, crop_window(img, reopen(centre)), slack=2)


def test_nothing_to_look_at_falls_back_to_the_centre() -> None:
    flat = save(Image.new("RGB", (600, 300), (90, 90, 90)), "PNG")
    result = THUMBNAIL.run(flat, THUMBNAIL.parse_params({"sizes": "100", "fit": "cover", "gravity": "auto"}), Limits())
    assert (result.details["focus"], result.details["faces"]) == ("centre", "0")
    assert "focus_box" not in result.details
    same_aspect = THUMBNAIL.run(
        flat, THUMBNAIL.parse_params({"sizes": "200x100", "fit": "cover", "gravity": "auto"}), Limits()
    )
    assert same_aspect.details == {"gravity": "auto", "focus": "none"}  # nothing cropped, nothing detected
