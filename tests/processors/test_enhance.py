"""The enhance operation: params, and each correction on inputs whose right answer is known.

Pixel statistics are asserted on decoded outputs (PNG unless the test is about the
default JPEG), so a correction that stops working fails here, not only in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import skimage.data
from PIL import ExifTags, Image, ImageFilter
from skimage.color import deltaE_ciede2000, rgb2lab

from processors import errors, get_operation
from processors.enhance import ENHANCE, STRIP, EnhanceParams, _Detail, _detail_image
from processors.image import PNG
from processors.operation import Limits
from streams.dev.samples import make_photo
from tests.processors.pixels import reopen, save

RNG_SEED = 7


def enhance(source: Image.Image | bytes, **params: str) -> tuple[Image.Image, dict[str, str]]:
    """Run enhance (PNG out unless a format is given) and decode the one rendition."""
    data = source if isinstance(source, bytes) else save(source, "PNG")
    result = ENHANCE.run(data, ENHANCE.parse_params({"format": "png", **params}), Limits())
    (rendition,) = result.renditions
    img = reopen(rendition)
    assert (img.width, img.height) == (rendition.width, rendition.height)
    return img, dict(result.details)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def relight(img: Image.Image, ev: float = 0.0, gains: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Image.Image:
    """What a camera with the wrong exposure or white balance would have recorded (linear light)."""
    lin = to_linear(pixels(img) / 255.0) * 2.0**ev * np.array(gains)
    return Image.fromarray(np.rint(to_srgb(lin) * 255).astype(np.uint8))


def photo(width: int = 400, height: int = 300, seed: int = 3) -> Image.Image:
    return make_photo(width, height, seed)


def real_photo(name: str) -> Image.Image:
    """A photograph shipped inside scikit-image's wheel (no download), its pixels read as sRGB."""
    img = Image.open(Path(skimage.data.__file__).parent / name).convert("RGB")
    img.info.pop("icc_profile", None)
    return img


def gray_blocks(width: int = 320, height: int = 240) -> Image.Image:
    """Neutral blocks of many grays: achromatic edges everywhere, as in a neutral scene."""
    levels = np.random.default_rng(RNG_SEED).integers(30, 230, (12, 16)).astype(np.uint8)
    return Image.fromarray(levels).resize((width, height), Image.Resampling.NEAREST).convert("RGB")


# --- params ---------------------------------------------------------------------------


def test_is_the_registered_operation() -> None:
    assert get_operation("enhance") is ENHANCE
    assert (ENHANCE.name, ENHANCE.version) == ("enhance", "7")


def test_defaults_and_canonical_form() -> None:
    params = ENHANCE.parse_params({})
    assert params == EnhanceParams()
    assert ENHANCE.canonical_params(params) == {
        "contrast": "auto",
        "denoise": "auto",
        "exposure": "auto",
        "format": "auto",
        "quality": "90",
        "saturation": "auto",
        "sharpen": "auto",
        "strength": "1",
        "strip": "true",
        "white_balance": "auto",
    }


def test_canonical_form_normalises_spellings() -> None:
    raw = {
        "exposure": "+0.50",
        "contrast": "off",
        "white_balance": "1.10+1+0.900",
        "denoise": "4",
        "sharpen": ".5",
        "saturation": "1.0",
        "strength": "0.80",
        "format": "jpg",
    }
    params = ENHANCE.parse_params(raw)
    canonical = ENHANCE.canonical_params(params)
    assert {key: canonical[key] for key in raw} == {
        "exposure": "0.5",
        "contrast": "off",
        "white_balance": "1.1+1+0.9",
        "denoise": "4+4",
        "sharpen": "0.5",
        "saturation": "1",
        "strength": "0.8",
        "format": "jpeg",
    }
    assert ENHANCE.parse_params(canonical) == params


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"brightness": "1"}, "brightness"),
        ({"strength": "1.5"}, "strength"),
        ({"strength": "-0.1"}, "strength"),
        ({"strength": "high"}, "strength"),
        ({"exposure": "3.5"}, "exposure"),
        ({"exposure": "1e1"}, "exposure"),
        ({"exposure": ""}, "exposure"),
        ({"exposure": "Auto"}, "exposure"),
        ({"contrast": "0.1"}, "contrast"),
        ({"white_balance": "1+1"}, "white_balance"),
        ({"white_balance": "0.1+1+1"}, "white_balance"),
        ({"white_balance": "1,1,1"}, "white_balance"),
        ({"saturation": "-1"}, "saturation"),
        ({"denoise": "51"}, "denoise"),
        ({"denoise": "1+2+3"}, "denoise"),
        ({"sharpen": "lots"}, "sharpen"),
        ({"format": "bmp"}, "format"),
        ({"quality": "0"}, "quality"),
        ({"strip": "yes"}, "strip"),
    ],
)
def test_invalid_params_name_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(errors.InvalidParameters) as caught:
        ENHANCE.parse_params(raw)
    assert caught.value.code == "invalid_parameters"
    assert key in str(caught.value)


# --- corrections, each on an input with a known right answer ---------------------------


def test_colour_cast_on_a_gray_card_is_neutralised() -> None:
    """A neutral scene shot under warm light: the gray card comes back (nearly) gray.

    A residual of the cast is left on purpose (the dead zone that keeps real warm scenes
    warm), so the check is that most of the cast is gone, not all of it.
    """
    scene = gray_blocks()
    scene.paste((128, 128, 128), (120, 80, 200, 160))
    warm = relight(scene, gains=(1.3, 1.0, 0.7))
    card = (slice(90, 150), slice(130, 190))
    before = pixels(warm)[card].mean(axis=(0, 1))
    out, details = enhance(warm)
    after = pixels(out)[card].mean(axis=(0, 1))
    assert np.ptp(before) > 30  # the cast is real: R and B apart by over 30 levels
    assert np.ptp(after) < 0.35 * np.ptp(before)
    assert abs(after.mean() - before.mean()) < 6  # gray stays as bright
    r, _, b = (float(v) for v in details["wb_gains"].split("+"))
    assert r < 0.9 < 1.1 < b


def test_explicit_gains_apply_exactly_in_linear_light() -> None:
    card = Image.new("RGB", (64, 64), (128, 128, 128))
    cast = relight(card, gains=(1.25, 1.0, 0.8))
    out, details = enhance(cast, white_balance="0.8+1+1.25", exposure="off", contrast="off", denoise="off")
    assert details["wb_gains"] == "0.80+1.00+1.25"
    assert np.abs(pixels(out)[32, 32] - 128).max() <= 1


def test_neutral_scene_keeps_its_balance() -> None:
    _, details = enhance(gray_blocks())
    assert details["wb_gains"] == "1.00+1.00+1.00"


def test_squeezed_histogram_is_stretched() -> None:
    """A photo whose tones were squeezed into the middle half gets its range back."""
    clean = pixels(photo()) / 255.0
    flat = Image.fromarray(np.rint((0.5 + (clean - 0.5) * 0.5) * 255).astype(np.uint8))
    out, details = enhance(flat)
    luma_in, luma_out = pixels(flat.convert("L")), pixels(out.convert("L"))
    assert float(details["contrast"]) > 1.5
    assert luma_out.std() > 1.5 * luma_in.std()
    low, high = np.percentile(luma_out, [1, 99])
    assert low < 60 and high > 210
    assert abs(luma_out.mean() - luma_in.mean()) < 14  # stretched around its middle, not shifted


def test_a_cast_under_a_fade_is_taken_out_after_the_fade() -> None:
    """A warm cast, then a fade that lifts the blacks: the fade is undone first, so the
    gains see the scene's own edges and the lifted blacks come back black and neutral."""
    scene = gray_blocks()
    scene.paste((10, 10, 10), (40, 40, 100, 100))
    warm = pixels(relight(scene, gains=(1.25, 1.0, 0.75))) / 255.0
    faded = Image.fromarray(np.rint((0.5 + (warm - 0.5) * 0.6) * 255).astype(np.uint8))
    out, details = enhance(faded)
    black = pixels(out)[50:90, 50:90].mean(axis=(0, 1))
    assert pixels(faded)[50:90, 50:90].min() > 50  # the blacks really are lifted
    assert float(details["contrast"]) > 1.5
    assert black.max() < 30 and np.ptp(black) < 6
    card = pixels(out).mean(axis=(0, 1))
    assert np.ptp(card) < 0.35 * np.ptp(pixels(faded).mean(axis=(0, 1)))


def test_a_band_clipped_by_a_cast_alone_is_not_pulled_to_white() -> None:
    """Nothing is white in every band: a bright patch's blue clipped under a cool cast
    comes back to about where it was, not to white (which would put the cast back)."""
    scene = gray_blocks()
    scene.paste((235, 235, 235), (120, 80, 200, 160))
    cool = relight(scene, gains=(0.8, 1.0, 1.3))
    assert pixels(cool)[120, 160, 2] == 255
    out, _ = enhance(cool)
    patch = pixels(out)[100:140, 140:180].mean(axis=(0, 1))
    assert np.abs(patch - 235).max() < 12


def test_noise_variance_drops_on_a_flat_patch() -> None:
    rng = np.random.default_rng(RNG_SEED)
    noisy = np.clip(128 + rng.normal(0, 8, (240, 320, 3)), 0, 255).astype(np.uint8)
    out, details = enhance(Image.fromarray(noisy))
    assert pixels(out).var() < 0.25 * noisy.var()
    assert abs(pixels(out).mean() - noisy.mean()) < 1.5
    before, after = float(details["noise_sigma_before"]), float(details["noise_sigma_after"])
    assert 4 < before < 8  # luma σ of independent σ=8 channel noise is about 5.3
    assert after < before / 2
    assert details["contrast"] == "1.00"  # noise is not mistaken for a washed-out photo


def test_noise_is_removed_without_flattening_edges() -> None:
    rng = np.random.default_rng(RNG_SEED)
    clean = pixels(gray_blocks())
    noisy = np.clip(clean + rng.normal(0, 6, clean.shape), 0, 255)
    out, _ = enhance(Image.fromarray(noisy.astype(np.uint8)), exposure="off", contrast="off", white_balance="off")
    assert np.abs(pixels(out) - clean).mean() < 0.6 * np.abs(noisy - clean).mean()
    edge = (slice(None), slice(99, 101))  # a block boundary: its step must survive
    assert np.abs(np.diff(pixels(out)[edge], axis=1)).mean() > 0.8 * np.abs(np.diff(clean[edge], axis=1)).mean()


def test_underexposed_photo_is_brightened_back() -> None:
    clean = photo()
    dark = relight(clean, ev=-1.5)
    out, details = enhance(dark)
    assert float(details["exposure_ev"]) > 1.0
    error_before = np.abs(pixels(dark) - pixels(clean)).mean()
    error_after = np.abs(pixels(out) - pixels(clean)).mean()
    assert error_after < error_before / 3


def test_noise_does_not_hide_underexposure() -> None:
    """Noise widens the histogram; the highlight headroom must be judged on the content.

    The astronaut's white suit makes headroom, not average brightness, the limit here.
    """
    dark = relight(real_photo("astronaut.png"), ev=-1.3)
    rng = np.random.default_rng(RNG_SEED)
    noisy = Image.fromarray(np.clip(pixels(dark) + rng.normal(0, 8, (512, 512, 3)), 0, 255).astype(np.uint8))
    _, clean_details = enhance(dark)
    _, noisy_details = enhance(noisy)
    assert float(clean_details["exposure_ev"]) == pytest.approx(1.3, abs=0.1)
    assert float(noisy_details["exposure_ev"]) == pytest.approx(float(clean_details["exposure_ev"]), abs=0.05)


def test_overexposed_photo_is_darkened_and_clipped_white_stays_neutral_and_brightest() -> None:
    """Clipped pixels go to one neutral level above every darkened unclipped one, below white.

    What was clipped lay anywhere from the clip level up: the expected value of that
    range is closer to it than white is.
    """
    clean = photo()
    bright = relight(clean, ev=1.0)
    out, details = enhance(bright, denoise="off", sharpen="off", contrast="off")  # levels could stretch it to 255
    assert float(details["exposure_ev"]) < -0.3
    assert pixels(out).mean() < pixels(bright).mean() - 8
    clipped = pixels(bright).min(axis=2) == 255
    assert clipped.any()
    whites = pixels(out)[clipped]
    assert np.ptp(whites, axis=1).max() <= 2  # neutral
    unclipped = pixels(out)[pixels(bright).max(axis=2) < 250]
    assert unclipped.max() < whites.min() < 255


@pytest.mark.parametrize("ev", [0.7, 1.0])
def test_overexposed_photo_gets_its_exposure_back_within_a_third_of_a_stop(ev: float) -> None:
    """A held-out photo (matplotlib's sample portrait, not in the benchmark's tuning set)."""
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    clean = Image.open(folder / "grace_hopper.jpg").convert("RGB").reduce(2)
    bright = relight(clean, ev=ev)
    out, details = enhance(bright)
    assert float(details["exposure_ev"]) == pytest.approx(-ev, abs=0.33)
    assert ciede2000(clean, out) < 0.5 * ciede2000(clean, bright)


def test_cast_after_the_clip_is_measured_on_the_clipped_highlights() -> None:
    """Over-exposed, then a cool white balance: clipped red lands short of 255, and says by how much."""
    clean = real_photo("astronaut.png").reduce(2)
    bright = pixels(relight(clean, ev=0.7)) / 255.0
    cool = Image.fromarray(np.rint(to_srgb(to_linear(bright) * np.array([0.8, 1.0, 1.25])) * 255).astype(np.uint8))
    out, details = enhance(cool)
    r, g, _ = (float(v) for v in details["wb_gains"].split("+"))
    assert r / g == pytest.approx(1.25, abs=0.06)  # red's clip level: 0.8 of white
    assert float(details["exposure_ev"]) < -0.4
    assert ciede2000(clean, out) < 0.8 * ciede2000(clean, cool)


def test_a_photo_red_by_nature_keeps_its_colour() -> None:
    """A fundus photo's gray-edge estimate is far redder than any real light: no white balance."""
    clean = real_photo("retina.jpg").reduce(4)
    out, details = enhance(clean)
    assert details["wb_gains"] == "1.00+1.00+1.00"
    assert ciede2000(clean, out) < 0.5
    _, details = enhance(relight(clean, gains=(1.25, 1.0, 0.75)))
    assert details["wb_gains"] == "1.00+1.00+1.00"  # the same photo, a little redder: still its own colour


def test_a_cast_that_clips_one_band_is_not_taken_for_overexposure() -> None:
    """A warm cast pushes a bright slide's red into clipping: white balanced, red's clip lies
    below the other bands' content, so it is the cast's, and nothing is darkened."""
    clean = real_photo("ihc.png").reduce(2)
    warm = relight(clean, gains=(1.25, 1.0, 0.75))
    out, details = enhance(warm)
    assert float(details["exposure_ev"]) == 0.0
    r, g, b = (float(v) for v in details["wb_gains"].split("+"))
    assert r < g < b
    assert ciede2000(clean, out) < 0.5 * ciede2000(clean, warm)


def ciede2000(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean(deltaE_ciede2000(rgb2lab(np.asarray(a)), rgb2lab(np.asarray(b)))))


def high_key(subject: Image.Image, side: int = 512) -> Image.Image:
    """A studio high-key shot: ``subject`` fading into a white backdrop blown out in the corners."""
    yy, xx = np.mgrid[0:side, 0:side] / (side / 2) - 1.0
    backdrop = np.repeat((236 + 19 * np.clip(np.hypot(yy, xx) / 1.3, 0, 1))[:, :, None], 3, axis=2)
    size = int(side * 0.7)
    small = pixels(subject.resize((size, size)))
    sy, sx = np.mgrid[0:size, 0:size] / (size / 2) - 1.0
    fade = np.clip((1 - np.hypot(sy, sx)) / 0.25, 0, 1)[:, :, None]
    at = (side - size) // 2
    window = backdrop[at : at + size, at : at + size]
    backdrop[at : at + size, at : at + size] = fade * small + (1 - fade) * window
    return Image.fromarray(np.rint(backdrop).astype(np.uint8))


@pytest.mark.parametrize("name", ["chelsea.png", "astronaut.png"])
def test_overexposed_real_photo_gets_closer_to_the_original(name: str) -> None:
    """+1 EV with clipped highlights: the colour error to the original drops by a third or more."""
    clean = real_photo(name).reduce(2)
    bright = relight(clean, ev=1.0)
    out, details = enhance(bright)
    assert float(details["exposure_ev"]) <= -0.4
    assert ciede2000(clean, out) < 0.67 * ciede2000(clean, bright)


def test_bright_photos_without_clipped_detail_are_not_darkened() -> None:
    """A high-key portrait (bright backdrop, blown corners) and a warm photo keep their exposure."""
    subject = real_photo("chelsea.png").crop((75, 0, 375, 300))
    studio = high_key(subject)
    out, details = enhance(studio)
    assert details["exposure_ev"] == "+0.00"
    assert ciede2000(studio, out) < 1.0
    clean = real_photo("chelsea.png")
    out, details = enhance(clean)
    assert details["exposure_ev"] == "+0.00"
    assert ciede2000(clean, out) < 1.0


def test_product_on_white_keeps_its_exposure() -> None:
    """A white background is not over-exposure: the product on it is judged."""
    product = Image.new("RGB", (400, 300), (255, 255, 255))
    product.paste(photo(200, 150).resize((200, 150)), (100, 75))
    _, details = enhance(product)
    assert abs(float(details["exposure_ev"])) < 0.2


def test_dull_colours_get_more_saturation_and_grays_none() -> None:
    dull = Image.blend(photo().convert("L").convert("RGB"), photo(), 0.35)
    out, details = enhance(dull, contrast="off", exposure="off", white_balance="off")
    assert float(details["saturation"]) > 1.05
    chroma = lambda img: np.ptp(pixels(img), axis=2).mean()  # noqa: E731
    assert chroma(out) > 1.05 * chroma(dull)
    _, gray = enhance(relight(gray_blocks(), gains=(1.05, 1.0, 0.95)), white_balance="off")
    assert gray["saturation"] == "1.00"  # a faintly tinted gray scene is not "dull colour"


def test_soft_edges_are_sharpened_without_halos() -> None:
    step = Image.new("L", (256, 256), 40)
    step.paste(215, (128, 0, 256, 256))
    soft = step.filter(ImageFilter.GaussianBlur(1.5)).convert("RGB")
    out, details = enhance(soft, denoise="off", contrast="off", exposure="off")
    assert float(details["sharpen"]) > 0.1
    row_in, row_out = pixels(soft)[128, :, 1], pixels(out)[128, :, 1]
    acutance = lambda row: (np.diff(row) ** 2).sum()  # noqa: E731
    assert acutance(row_out) > 1.05 * acutance(row_in)
    assert row_out.min() >= 40 - 12 and row_out.max() <= 215 + 12  # the documented cap: 12 levels
    strong, _ = enhance(soft, denoise="off", contrast="off", exposure="off", sharpen="3")
    row_strong = pixels(strong)[128, :, 1]
    assert acutance(row_strong) > acutance(row_out)
    assert row_strong.min() >= 40 - 12 and row_strong.max() <= 215 + 12


def test_sharp_edges_are_not_sharpened() -> None:
    _, details = enhance(gray_blocks())
    assert details["sharpen"] == "0.00"


@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "rocket.jpg"])
def test_good_photos_are_left_nearly_unchanged(name: str) -> None:
    clean = real_photo(name)
    out, details = enhance(clean)
    assert np.abs(pixels(out) - pixels(clean)).mean() < 1.0, details
    assert details["exposure_ev"] == "+0.00"
    assert details["wb_gains"] == "1.00+1.00+1.00"


# --- switches, strength, reproducibility ---------------------------------------------


def test_everything_off_changes_no_pixel() -> None:
    dark = relight(photo(), ev=-1.0, gains=(1.2, 1.0, 0.8))
    off = {k: "off" for k in ("exposure", "contrast", "white_balance", "saturation", "denoise", "sharpen")}
    out, details = enhance(dark, **off)
    assert np.array_equal(pixels(out), pixels(dark))
    assert {details[k] for k in ("exposure_ev", "contrast", "wb_gains", "saturation", "denoise", "sharpen")} == {"off"}


def test_strength_zero_changes_no_pixel_and_half_strength_does_half() -> None:
    dark = relight(photo(), ev=-1.5)
    out, _ = enhance(dark, strength="0")
    assert np.array_equal(pixels(out), pixels(dark))
    _, full = enhance(dark, white_balance="off")  # exposure is measured on the balanced image
    _, half = enhance(dark, white_balance="off", strength="0.5")
    assert float(half["exposure_ev"]) == pytest.approx(float(full["exposure_ev"]) / 2, abs=0.01)


def test_reported_amounts_reproduce_the_automatic_result() -> None:
    """The completion event's amounts, passed back as params, give the same bytes."""
    source = save(relight(photo(), ev=-0.8, gains=(1.2, 1.0, 0.85)), "PNG")
    auto = ENHANCE.run(source, ENHANCE.parse_params({"format": "png"}), Limits())
    d = auto.details
    explicit = {
        "format": "png",
        "white_balance": d["wb_gains"],
        "exposure": d["exposure_ev"],
        "contrast": d["contrast"],
        "saturation": d["saturation"],
        "denoise": d["denoise"],
        "sharpen": d["sharpen"],
    }
    again = ENHANCE.run(source, ENHANCE.parse_params(explicit), Limits())
    assert again.renditions[0].data == auto.renditions[0].data


def test_same_input_same_bytes() -> None:
    rng = np.random.default_rng(RNG_SEED)
    noisy = pixels(relight(photo(), ev=-1.0)) + rng.normal(0, 5, (300, 400, 3))
    data = save(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), "JPEG", quality=92)
    first = ENHANCE.run(data, ENHANCE.parse_params({}), Limits())
    second = ENHANCE.run(data, ENHANCE.parse_params({}), Limits())
    assert first.renditions[0].data == second.renditions[0].data
    assert first.details == second.details


def test_result_shape_and_details() -> None:
    result = ENHANCE.run(save(photo(), "JPEG"), ENHANCE.parse_params({}), Limits())
    (rendition,) = result.renditions
    assert (rendition.name, rendition.content_type, rendition.extension) == ("enhanced", "image/jpeg", "jpg")
    assert (rendition.width, rendition.height) == (400, 300)
    assert result.backend == "pillow"
    assert set(result.details) == {
        "wb_gains",
        "exposure_ev",
        "contrast",
        "saturation",
        "noise_sigma_before",
        "denoise",
        "sharpen",
        "noise_sigma_after",
    }
    assert all(isinstance(v, str) for v in result.details.values())


def test_strips_leave_no_seam() -> None:
    """Rendering a strip at a time gives what one piece would, across every strip boundary."""
    rng = np.random.default_rng(RNG_SEED)
    tall = photo(300, 2 * STRIP + 88).convert("RGB")
    noisy = Image.fromarray(np.clip(pixels(tall) + rng.normal(0, 6, (tall.height, 300, 3)), 0, 255).astype(np.uint8))
    out, details = enhance(noisy, white_balance="off", exposure="off", contrast="off", saturation="off", sharpen="0.5")
    luma, chroma = (float(s) for s in details["denoise"].split("+"))
    plan = _Detail(denoise=(luma, chroma), amount=0.5, noise=float(details["noise_sigma_before"]))
    whole = _detail_image(noisy, plan)
    assert np.abs(pixels(out) - pixels(whole)).max() <= 1


# --- input variety ---------------------------------------------------------------------


def test_alpha_is_kept_and_transparent_pixels_are_not_measured() -> None:
    """Half the canvas is transparent black: it must neither darken the verdict nor be lost."""
    dark = relight(photo(200, 300), ev=-1.5).convert("RGBA")
    canvas = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    canvas.paste(dark, (200, 0))
    alpha = np.zeros((300, 400), dtype=np.uint8)
    alpha[:, 200:] = np.linspace(255, 128, 200).astype(np.uint8)
    canvas.putalpha(Image.fromarray(alpha))
    out, details = enhance(canvas)
    _, opaque = enhance(dark.convert("RGB"))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)
    assert details["exposure_ev"] == opaque["exposure_ev"]


def test_alpha_is_flattened_for_jpeg() -> None:
    canvas = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out, _ = enhance(canvas, format="jpeg")
    assert out.mode == "RGB"


def test_grayscale_stays_gray_and_is_corrected() -> None:
    gray = photo().convert("L")
    flat = Image.fromarray(np.rint(100 + pixels(gray) * 0.3).astype(np.uint8))
    out, details = enhance(flat)
    assert out.mode == "L"
    assert details["wb_gains"] == "off" and details["saturation"] == "off"
    assert pixels(out).std() > 1.5 * pixels(flat).std()


def test_sixteen_bit_gray_is_enhanced() -> None:
    ramp = (np.linspace(20000, 40000, 256)[None, :] * np.ones((64, 1))).astype(np.uint16)
    out, _ = enhance(Image.fromarray(ramp))
    assert out.mode == "L" and out.size == (256, 64)
    assert np.ptp(pixels(out)) > np.ptp(ramp / 257.0) * 1.2


def test_exif_orientation_is_applied() -> None:
    stored = relight(photo(400, 300), ev=-1.0)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    out, _ = enhance(save(stored, "JPEG", quality=95, exif=exif))
    assert out.size == (300, 400)


def test_exif_is_kept_only_when_asked() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    data = save(photo(), "JPEG", exif=exif)
    stripped, _ = enhance(data, format="jpeg")
    kept, _ = enhance(data, format="jpeg", strip="false")
    assert ExifTags.Base.Make not in stripped.getexif()
    assert kept.getexif()[ExifTags.Base.Make] == "TestCam"


def test_cmyk_input_comes_out_srgb() -> None:
    out, _ = enhance(save(photo().convert("CMYK"), "JPEG"))
    assert out.mode == "RGB" and out.size == (400, 300)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 700), (700, 5)])
def test_tiny_and_thin_images(size: tuple[int, int]) -> None:
    out, details = enhance(Image.new("RGB", size, (90, 120, 150)))
    assert out.size == size
    assert details["exposure_ev"] == "+0.00"


def test_fully_transparent_image() -> None:
    out, details = enhance(Image.new("RGBA", (50, 40), (10, 20, 30, 0)), format=PNG.name)
    assert out.mode == "RGBA" and details["wb_gains"] == "1.00+1.00+1.00"


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(errors.NotAnImage):
        ENHANCE.run(b"not an image", ENHANCE.parse_params({}), Limits())
