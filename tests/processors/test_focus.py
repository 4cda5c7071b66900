"""Gravity: names, crop placement, and what the face and attention detectors find.

Faces need a real face: scikit-image's bundled ``astronaut`` photo (Eileen Collins),
whose face box was labelled by hand, composited into plain canvases at known places.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from processors import focus
from processors.focus import Focus

ASTRONAUT_FACE = (175, 65, 275, 170)
"""The face in ``data.astronaut()`` (512×512), eyebrows to chin and ear to ear, by hand."""


def canvas(width: int, height: int, seed: int = 1) -> Image.Image:
    """A plain, softly mottled background (a studio wall), nothing in it to look at."""
    rng = np.random.default_rng(seed)
    base = rng.normal(120, 6, (max(1, height // 16), max(1, width // 16), 3)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)


def with_photo(
    size: tuple[int, int], photo: np.ndarray, at: tuple[int, int], side: int
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """``photo`` scaled to ``side`` pixels wide pasted at ``at``; the image and the photo's box."""
    img = canvas(*size)
    pasted = Image.fromarray(photo).convert("RGB")
    pasted = pasted.resize((side, round(side * pasted.height / pasted.width)))
    img.paste(pasted, at)
    return img, (at[0], at[1], at[0] + pasted.width, at[1] + pasted.height)


def astronaut_in(size: tuple[int, int], at: tuple[int, int], side: int) -> tuple[Image.Image, tuple[float, ...]]:
    """A canvas with the astronaut in it, and her face box in canvas pixels."""
    img, _ = with_photo(size, data.astronaut(), at, side)
    s = side / 512
    left, top, right, bottom = ASTRONAUT_FACE
    return img, (at[0] + left * s, at[1] + top * s, at[0] + right * s, at[1] + bottom * s)


def inside(inner: tuple[float, ...], outer: tuple[float, ...], slack: float = 0.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gravity"),
    [
        ("auto", "auto"),
        ("face", "face"),
        ("faces", "face"),
        ("attention", "attention"),
        ("smart", "attention"),
        ("sm", "attention"),
        ("centre", "centre"),
        ("center", "centre"),
        ("ce", "centre"),
        ("north", "north"),
        ("no", "north"),
        ("so", "south"),
        ("ea", "east"),
        ("we", "west"),
        ("noea", "northeast"),
        ("north_east", "northeast"),
        ("nowe", "northwest"),
        ("south_east", "southeast"),
        ("sowe", "southwest"),
        ("southwest", "southwest"),
    ],
)
def test_gravity_names_imgproxy_and_cloudinary_users_write(name: str, gravity: str) -> None:
    assert focus.parse_gravity(name) == gravity


@pytest.mark.parametrize("name", ["", "Centre", "top", "fp", "north-east", "n"])
def test_unknown_gravities_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="compass point"):
        focus.parse_gravity(name)


# --- placement ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gravity", "offset"),
    [
        ("centre", (100, 50)),
        ("north", (100, 0)),
        ("south", (100, 100)),
        ("east", (200, 50)),
        ("west", (0, 50)),
        ("northeast", (200, 0)),
        ("northwest", (0, 0)),
        ("southeast", (200, 100)),
        ("southwest", (0, 100)),
    ],
)
def test_compass_points_put_the_window_flush_with_their_edges(gravity: str, offset: tuple[int, int]) -> None:
    # a 100×100 window in a 300×200 image: 200 pixels of play across, 100 down
    assert focus.place((300, 200), (100.0, 100.0), focus.parse_gravity(gravity), None) == (
        offset[0],
        offset[1],
        offset[0] + 100,
        offset[1] + 100,
    )


def test_a_focus_centres_the_window_and_the_edges_hold_it_in() -> None:
    middle = Focus("face", (140.0, 40.0, 160.0, 60.0))
    assert focus.place((300, 200), (100.0, 100.0), "auto", middle) == (100.0, 0.0, 200.0, 100.0)
    corner = Focus("face", (280.0, 180.0, 300.0, 200.0))
    assert focus.place((300, 200), (100.0, 100.0), "face", corner) == (200.0, 100.0, 300.0, 200.0)
    nothing = Focus("centre", None)
    assert focus.place((300, 200), (100.0, 100.0), "auto", nothing) == (100.0, 50.0, 200.0, 150.0)


def test_faces_are_kept_largest_first_while_they_fit() -> None:
    big, small, far = (0.0, 0.0, 50.0, 50.0), (60.0, 0.0, 80.0, 20.0), (500.0, 0.0, 530.0, 30.0)
    assert focus.fitting([small, far, big], (100.0, 100.0)) == (0.0, 0.0, 80.0, 50.0)
    assert focus.fitting([small, big], (40.0, 40.0)) == big  # even the largest does not fit: itself
    assert focus.fitting([], (100.0, 100.0)) is None


def test_details_name_the_method_and_the_box() -> None:
    assert Focus("face", (10.4, 20.0, 60.6, 90.0), 2).details() == {
        "focus": "face",
        "faces": "2",
        "focus_box": "10,20,50,70",
    }
    assert Focus("centre", None).details() == {"focus": "centre", "faces": "0"}


# --- detection ------------------------------------------------------------------------


def test_the_pinned_opencv_ships_the_face_cascade() -> None:
    assert f"/{focus.FACE_CASCADE}," in focus.face_detector()


def test_the_face_detector_identity_names_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # outputs of auto and face carry it: a retuned search must not reuse their keys
    before = focus.face_detector()
    monkeypatch.setattr(focus, "FACE_SHORT_SIDE", focus.FACE_SHORT_SIDE + 40)
    assert focus.face_detector() != before
    monkeypatch.setattr(focus, "FACE_NEIGHBOURS", focus.FACE_NEIGHBOURS + 1)
    assert len({before, focus.face_detector()}) == 2
    retuned = focus.face_detector()
    monkeypatch.setattr(focus, "CHECK_NEIGHBOURS", focus.CHECK_NEIGHBOURS + 1)
    assert focus.face_detector() != retuned  # the second look is part of the search


@pytest.mark.parametrize(
    ("size", "at", "side"),
    [((1600, 600), (1100, 50), 500), ((600, 1600), (50, 1050), 500), ((2400, 1200), (150, 100), 1000)],
)
def test_a_real_face_is_found_where_it_was_put(size: tuple[int, int], at: tuple[int, int], side: int) -> None:
    img, face = astronaut_in(size, at, side)
    found = focus.detect(img, img.size, "face")
    assert found.salient is None  # face alone looks for nothing else
    assert len(found.faces) == 1
    assert overlap(found.faces[0], face) > 0.6, (found.faces, face)


@pytest.mark.parametrize(
    ("size", "at"), [((2400, 1200), (1700, 150)), ((1200, 2400), (80, 1900)), ((1800, 1200), (60, 700))]
)
def test_a_face_a_tenth_of_the_short_side_is_found_and_kept(size: tuple[int, int], at: tuple[int, int]) -> None:
    # a tenth: below the eighth a 24-pixel window on a 200-pixel copy could see
    side = round(0.1 * min(size) * 512 / (ASTRONAUT_FACE[3] - ASTRONAUT_FACE[1]))
    img, face = astronaut_in(size, at, side)
    assert (face[3] - face[1]) / min(size) == pytest.approx(0.1, abs=0.005)
    found = focus.detect(img, img.size, "auto")
    assert len(found.faces) == 1 and overlap(found.faces[0], face) > 0.5, (found.faces, face)
    crop = (float(min(size)), float(min(size)))
    window = focus.place(img.size, crop, "auto", found.focus("auto", crop))
    assert inside(face, window)


@pytest.mark.parametrize(
    ("size", "at"), [((1800, 1200), (60, 700)), ((2000, 1000), (300, 500)), ((1200, 1800), (500, 300))]
)
def test_a_face_the_first_stage_doubts_is_confirmed_by_the_second_look(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], at: tuple[int, int]
) -> None:
    # 9 % of the short side: 22 pixels on the 240-pixel copy, too few detections to be sure
    side = round(0.09 * min(size) * 512 / (ASTRONAUT_FACE[3] - ASTRONAUT_FACE[1]))
    img, face = astronaut_in(size, at, side)
    (found,) = focus.detect(img, img.size, "face").faces
    assert overlap(found, face) > 0.6, (found, face)
    monkeypatch.setattr(focus, "CHECK_MAX", 0)  # the first stage alone
    assert focus.detect(img, img.size, "face").faces == []


class _Seer:
    """A stand-in cascade: a face at ``box``, and in the mirror at the mirrored place or nowhere."""

    def __init__(self, box: tuple[int, int, int, int], mirrored_too: bool) -> None:
        self.box, self.mirrored_too, self.calls = box, mirrored_too, 0

    def detectMultiScale(self, pixels: np.ndarray, **_: object) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        if self.calls == 1:
            return [self.box]
        x, y, w, h = self.box  # the mirror: at the mirrored place, or nowhere
        return [(pixels.shape[1] - x - w, y, w, h)] if self.mirrored_too else []


def test_the_second_look_keeps_only_what_it_also_sees_in_the_mirror() -> None:
    grey = canvas(400, 300).convert("L")
    at = (200.0, 150.0, 48.0)  # a 48-pixel candidate: the region is 96 pixels, not rescaled
    symmetric = focus._check(_Seer((20, 24, 48, 48), mirrored_too=True), grey, at)
    assert [tuple(round(v) for v in r) for r in symmetric] == [(172, 126, 48, 48)]
    assert focus._check(_Seer((20, 24, 48, 48), mirrored_too=False), grey, at) == []


def test_the_second_look_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # blurred noise the first stage fires on in several places, none of them sure
    rng = np.random.default_rng(0)
    cells = rng.normal(128, 40, (60, 80)).clip(0, 255).astype(np.uint8)
    noise = Image.fromarray(cells).resize((1280, 960), Image.Resampling.BICUBIC)
    looked: list[tuple[float, float, float]] = []

    def check(_checker: object, _grey: Image.Image, at: tuple[float, float, float]) -> list[focus.Rect]:
        looked.append(at)
        return []

    monkeypatch.setattr(focus, "_check", check)
    assert focus.find_faces(focus._cascade(), noise) == []
    places = len(looked)
    assert places >= 2
    looked.clear()
    monkeypatch.setattr(focus, "CHECK_MAX", places - 1)
    focus.find_faces(focus._cascade(), noise)
    assert len(looked) == places - 1


def test_attention_does_not_depend_on_the_face_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # attention outputs carry no face detector in their identity: their bytes must not move
    img, _ = with_photo((2000, 800), data.chelsea(), (1450, 450), 400)
    before = focus.detect(img, img.size, "attention").salient
    monkeypatch.setattr(focus, "FACE_SHORT_SIDE", 400)
    assert focus.detect(img, img.size, "attention").salient == before
    assert focus.detect(img, img.size, "auto").salient == before  # auto, when it finds no face


def test_detection_on_a_reduced_copy_reports_source_pixels() -> None:
    img, face = astronaut_in((1600, 600), (1100, 50), 500)
    reduced = img.resize((800, 300))  # what a JPEG draft decode at 1/2 gives
    (box,) = focus.detect(reduced, img.size, "face").faces
    assert overlap(box, face) > 0.6


def test_no_face_in_a_scene_without_one() -> None:
    img, _ = with_photo((1600, 800), data.coffee(), (900, 200), 600)
    found = focus.detect(img, img.size, "auto")
    assert found.faces == []
    assert found.salient is not None  # auto goes on to attention when no face is found


def test_attention_finds_a_subject_off_centre() -> None:
    img, subject = with_photo((2000, 800), data.chelsea(), (1450, 450), 400)
    box = focus.detect(img, img.size, "attention").salient
    assert box is not None
    assert overlap(box, subject) > 0.4, (box, subject)


def test_a_flat_image_has_no_salient_region() -> None:
    assert focus.salient_box(Image.new("L", (300, 200), 128)) is None
