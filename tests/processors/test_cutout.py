"""The cutout operation end to end, against masks drawn here independently of it.

Every scene is drawn at 4× and box-reduced, so the truth is the exact anti-aliased
coverage; the composites are saved as JPEG, as a camera would.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from processors import errors, get_operation
from processors.cutout import CUTOUT, CutoutParams
from processors.image import encoded_has_transparency
from processors.operation import Limits, Rendition
from processors.thumbnail import THUMBNAIL
from tests.processors.pixels import pixel, reopen, save

W, H = 480, 360
RED = (200, 30, 40)


def cut(data: bytes, **params: str) -> tuple[Rendition, dict[str, str]]:
    result = CUTOUT.run(data, CUTOUT.parse_params(params), Limits())
    (rendition,) = result.renditions
    return rendition, dict(result.details)


def coverage(draw: object, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """The true alpha (0..1) of what ``draw(ImageDraw, scale)`` paints, at 4× then reduced."""
    big = Image.new("L", (size[0] * 4, size[1] * 4), 0)
    draw(ImageDraw.Draw(big), 4)  # type: ignore[operator]
    return np.asarray(big.reduce(4), np.float32) / 255.0


def disc(d: ImageDraw.ImageDraw, s: int) -> None:
    d.ellipse((140 * s, 70 * s, 340 * s, 290 * s), fill=255)


def ring(d: ImageDraw.ImageDraw, s: int) -> None:
    d.ellipse((120 * s, 60 * s, 360 * s, 300 * s), fill=255)
    d.ellipse((190 * s, 130 * s, 290 * s, 230 * s), fill=0)


def composite(alpha: np.ndarray, subject: np.ndarray, background: np.ndarray) -> bytes:
    a = alpha[..., None]
    pixels = np.clip(np.rint(a * subject + (1 - a) * background), 0, 255).astype(np.uint8)
    return save(Image.fromarray(pixels), "JPEG", quality=92)


def textured(colour: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array(colour, np.float32) * np.linspace(1.1, 0.8, W, dtype=np.float32)[None, :, None]
    return np.clip(base + rng.normal(0, 6, (H, W, 1)), 0, 255) * np.ones((H, W, 3), np.float32)


def gradient(top: tuple[int, int, int], bottom: tuple[int, int, int], seed: int = 1) -> np.ndarray:
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    rng = np.random.default_rng(seed)
    field = np.array(top, np.float32) + (np.array(bottom, np.float32) - np.array(top, np.float32)) * t
    return field * np.ones((H, W, 3), np.float32) + rng.normal(0, 1.5, (H, W, 1))


def alpha_of(rendition: Rendition) -> np.ndarray:
    return np.asarray(reopen(rendition).getchannel("A"))


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    pred, true = alpha >= 128, truth >= 0.5
    return float((pred & true).sum() / (pred | true).sum())


# --- params ---------------------------------------------------------------------------


def test_is_the_registered_operation_with_documented_defaults() -> None:
    assert get_operation("cutout") is CUTOUT
    assert CUTOUT.parse_params({}) == CutoutParams()
    assert CUTOUT.canonical_params(CUTOUT.parse_params({"background": "FFFFFF", "trim": "true", "padding": "5"})) == {
        "background": "ffffff",
        "format": "auto",
        "padding": "5",
        "quality": "90",
        "strict": "true",
        "strip": "true",
        "trim": "true",
    }


@pytest.mark.parametrize(
    "raw",
    [{"backgrund": "none"}, {"background": "white"}, {"padding": "101"}, {"padding": "5"}, {"strict": "yes"}],
)
def test_bad_params_are_refused(raw: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidParameters):
        CUTOUT.parse_params(raw)


# --- plain backgrounds ----------------------------------------------------------------


def test_a_subject_on_an_off_white_gradient_comes_out_transparent_around_it() -> None:
    truth = coverage(disc)
    data = composite(truth, textured(RED), gradient((246, 241, 231), (222, 216, 204)))
    rendition, details = cut(data)
    assert (rendition.content_type, rendition.width, rendition.height) == ("image/png", W, H)
    alpha = alpha_of(rendition)
    assert iou(alpha, truth) >= 0.97
    near = np.asarray(Image.fromarray((truth > 0).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))) > 0
    assert alpha[~near].max() <= 40 and alpha[truth == 1].min() >= 215  # exact two pixels off the edge
    assert details["trusted"] == "true" and float(details["confidence"]) >= 0.5


def test_edges_are_soft_and_keep_no_halo_of_the_background() -> None:
    truth = coverage(disc)
    green = np.ones((H, W, 3), np.float32) * np.array([60, 170, 80], np.float32)
    rendition, _ = cut(composite(truth, np.ones((H, W, 3), np.float32) * np.array(RED, np.float32), green))
    img = np.asarray(reopen(rendition))
    edge = (truth > 0.1) & (truth < 0.9)
    alpha = img[..., 3].astype(np.float32) / 255
    assert np.abs(alpha[edge] - truth[edge]).mean() < 0.2  # a ramp, not a hard step
    semi = (img[..., 3] > 20) & (img[..., 3] < 235)
    assert semi.sum() > 100
    assert np.median(img[semi][:, 1]) < 90  # red's green channel, not the paper's 170


def test_a_hole_through_the_subject_stays_transparent() -> None:
    truth = coverage(ring)
    rendition, _ = cut(composite(truth, textured((40, 60, 160)), gradient((250, 250, 250), (240, 240, 240))))
    alpha = alpha_of(rendition)
    assert alpha[180, 240] == 0  # the middle of the hole
    assert iou(alpha, truth) >= 0.95


def test_a_soft_shadow_is_background() -> None:
    truth = coverage(disc)
    shadow = Image.fromarray((coverage(disc) * 255).astype(np.uint8)).transform(
        (W, H), Image.Transform.AFFINE, (1, 0, -20, 0, 1, -25)
    )
    darkening = 1 - 0.25 * np.asarray(shadow.filter(ImageFilter.GaussianBlur(10)), np.float32)[..., None] / 255
    grey = np.full((H, W, 3), 212, np.float32) * darkening
    rendition, _ = cut(composite(truth, textured(RED), grey))
    alpha = alpha_of(rendition)
    shadowed = (truth == 0) & (darkening[..., 0] < 0.85)
    assert shadowed.sum() > 500 and (alpha[shadowed] < 128).mean() > 0.95
    assert iou(alpha, truth) >= 0.95


def test_background_trim_padding_and_formats() -> None:
    truth = coverage(disc)
    data = composite(truth, textured(RED), gradient((250, 250, 250), (244, 244, 244)))
    flat, _ = cut(data, background="0000ff")
    img = reopen(flat)
    assert flat.content_type == "image/jpeg" and img.mode == "RGB"
    assert np.abs(np.subtract(pixel(img, 5, 5), (0, 0, 255))).max() <= 12
    webp, _ = cut(data, format="webp")
    assert webp.content_type == "image/webp" and encoded_has_transparency(webp.data)
    trimmed, details = cut(data, trim="true", padding="10")
    x, y, w, h = (int(v) for v in details["subject_box"].split(","))
    assert abs(x - 140) <= 3 and abs(y - 70) <= 3 and abs(w - 200) <= 6 and abs(h - 220) <= 6
    pad = -(-max(w, h) // 10)
    assert (trimmed.width, trimmed.height) == (w + 2 * pad, h + 2 * pad)
    assert alpha_of(trimmed)[: pad - 1].max() == 0


def test_the_same_input_gives_the_same_bytes() -> None:
    data = composite(coverage(disc), textured(RED), gradient((250, 250, 250), (240, 240, 240)))
    assert cut(data)[0].data == cut(data)[0].data


def test_chained_into_thumbnail_the_transparency_survives() -> None:
    truth = coverage(disc)
    rendition, _ = cut(composite(truth, textured(RED), gradient((250, 250, 250), (240, 240, 240))))
    (thumb,) = THUMBNAIL.run(rendition.data, THUMBNAIL.parse_params({"sizes": "120"}), Limits()).renditions
    img = reopen(thumb)
    assert thumb.content_type == "image/png" and img.mode == "RGBA"
    assert pixel(img, 2, 2)[3] == 0 and pixel(img, 60, 45)[3] == 255
    rim = np.asarray(img)
    semi = (rim[..., 3] > 30) & (rim[..., 3] < 225)
    assert np.median(rim[semi][:, 1]) < 90  # no light fringe drawn in from the transparent pixels


# --- busy backgrounds -----------------------------------------------------------------


def confetti(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (W, H), (235, 235, 235))
    d = ImageDraw.Draw(img)
    for _ in range(300):
        x, y, r = int(rng.integers(W)), int(rng.integers(H)), int(rng.integers(4, 30))
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return np.asarray(img, np.float32)


def two_tone() -> np.ndarray:
    out = np.empty((H, W, 3), np.float32)
    out[:, : W // 2], out[:, W // 2 :] = (240, 240, 240), (40, 80, 150)
    return out


def low_contrast() -> np.ndarray:
    return np.full((H, W, 3), 200, np.float32) + np.random.default_rng(3).normal(0, 1.5, (H, W, 1))


@pytest.mark.parametrize(
    ("background", "subject"),
    [
        (confetti(1), textured(RED)),
        (two_tone(), textured(RED)),
        (low_contrast(), np.full((H, W, 3), 204, np.float32)),
    ],
    ids=["confetti", "two_tone", "low_contrast"],
)
def test_a_busy_or_ambiguous_background_is_refused_or_flagged(background: np.ndarray, subject: np.ndarray) -> None:
    data = composite(coverage(disc), subject, background)
    with pytest.raises(errors.BackgroundNotPlain) as refused:
        cut(data)
    assert refused.value.code == "background_not_plain" and refused.value.retryable is False
    rendition, details = cut(data, strict="false")
    assert details["trusted"] == "false" and float(details["confidence"]) < 0.5 and details["reason"]
    assert rendition.content_type == "image/png"


def test_a_whole_photograph_is_refused() -> None:
    rng = np.random.default_rng(5)
    scene = Image.fromarray(rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)).resize((W, H))
    with pytest.raises(errors.BackgroundNotPlain):
        cut(save(scene, "JPEG", quality=90))


# --- transparent pixels, encoding, parts the background's colour ----------------------


def test_transparent_pixels_far_from_the_subject_are_one_colour_and_near_it_the_subjects() -> None:
    truth = coverage(disc)
    rendition, _ = cut(composite(truth, textured(RED), gradient((250, 250, 250), (240, 240, 240))))
    img = np.asarray(reopen(rendition))
    visible = np.asarray(Image.fromarray((img[..., 3] > 0).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(9)))
    far = np.asarray(Image.fromarray(visible).filter(ImageFilter.MaxFilter(61))) == 0
    assert far.sum() > 10_000 and len(np.unique(img[far][:, :3], axis=0)) == 1
    near = (visible > 0) & (img[..., 3] == 0)  # transparent, within 4 px of a visible pixel
    assert near.sum() > 500
    assert np.median(img[near][:, 0]) > 120 and np.median(img[near][:, 1]) < 90  # red, not the white paper


def test_a_padded_trim_repeats_the_edge_colours_into_the_padding() -> None:
    truth = coverage(disc)
    rendition, _ = cut(
        composite(truth, textured(RED), gradient((250, 250, 250), (244, 244, 244))), trim="true", padding="10"
    )
    img = np.asarray(reopen(rendition))
    assert img[..., 3][:5].max() == 0
    assert img[:5, img.shape[1] // 2, 1].max() < 120  # red's green channel, not black nor white


def test_a_pale_part_of_the_subject_the_backgrounds_colour_is_kept_or_flagged() -> None:
    """A grey-white panel on an off-white backdrop reads as a soft shadow by colour alone."""
    panel = coverage(lambda d, s: d.rectangle((140 * s, 60 * s, 340 * s, 300 * s), fill=255))
    subject = np.ones((H, W, 3), np.float32) * np.array([224, 222, 220], np.float32)
    subject[:, 140:230] = textured(RED)[:, 140:230]
    rng = np.random.default_rng(4)
    subject += rng.normal(0, 2, (H, W, 1)).astype(np.float32)
    data = composite(panel, subject, gradient((246, 241, 231), (236, 231, 221)))
    rendition, details = cut(data, strict="false")
    if details["trusted"] == "true":
        assert iou(alpha_of(rendition), panel) >= 0.95
    else:
        with pytest.raises(errors.BackgroundNotPlain):
            cut(data)


def test_long_edges_outside_the_outline_are_flagged() -> None:
    truth = coverage(disc)
    background = gradient((250, 250, 250), (240, 240, 240))
    background[30:60, 20:460] = 222  # a pale band far from the subject, shadow-like by colour, sharp-edged
    with pytest.raises(errors.BackgroundNotPlain):
        cut(composite(truth, textured(RED), background))
    _, details = cut(composite(truth, textured(RED), background), strict="false")
    assert details["trusted"] == "false" and float(details["confidence"]) < 0.5


def test_the_same_input_gives_the_same_bytes_trimmed_and_with_exif_kept() -> None:
    data = composite(coverage(disc), textured(RED), gradient((250, 250, 250), (240, 240, 240)))
    assert cut(data, trim="true", padding="5")[0].data == cut(data, trim="true", padding="5")[0].data
    kept, _ = cut(data, strip="false")
    assert kept.data == cut(data, strip="false")[0].data and reopen(kept).mode == "RGBA"
