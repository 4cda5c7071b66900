"""What face and attention gravity add to a cover thumbnail of a 12-megapixel photo, on one core.

Two 4000×3000 JPEGs made here from scikit-image's bundled photos (no download): the
``astronaut`` portrait off-centre in a plain frame (a face to find) and the ``coffee``
still life (no face: ``auto`` goes on to attention). Each runs through the thumbnail step
(``sizes=720x588,fit=cover``) with ``gravity=centre`` (the reference: no detection) and
with ``auto``, ``face`` and ``attention``, in one process pinned to one CPU with OpenCV
on one thread; the median of ``--rounds`` runs counts. ``added_ms`` is a gravity's median
minus centre's in the same run; the goal is at most 30 ms. ``*_cpu_ms`` are the same
medians in CPU time of the process (``time.process_time``): on a shared machine the wall
clock also counts the time other programs held the core, the CPU time does not.
``detect_ms`` times ``processors.focus.detect`` alone on the image as the step decodes it.

    .venv/bin/python benchmarks/gravity.py [--rounds 15]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from typing import Any

import cv2
import numpy as np
from PIL import Image
from skimage import data

from processors import focus
from processors.image import load, open_image
from processors.operation import Limits
from processors.thumbnail import THUMBNAIL

SIZE = (4000, 3000)
SPEC = {"sizes": "720x588", "fit": "cover"}
GRAVITIES = ("centre", "auto", "face", "attention")
GOAL_MS = 30.0


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _photos() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    wall = rng.normal(120, 6, (SIZE[1] // 16, SIZE[0] // 16, 3)).clip(0, 255).astype(np.uint8)
    portrait = Image.fromarray(wall).resize(SIZE, Image.Resampling.BICUBIC)
    portrait.paste(Image.fromarray(data.astronaut()).resize((2400, 2400)), (1500, 600))  # face ~470 px
    still = Image.fromarray(data.coffee()).resize(SIZE, Image.Resampling.LANCZOS)
    return {"astronaut-in-frame": _jpeg(portrait), "coffee": _jpeg(still)}


def _median_ms(fn: Any, rounds: int) -> tuple[float, float]:
    """The median wall-clock and CPU milliseconds of ``rounds`` calls."""
    fn()  # warm: the cascade loads once per process
    wall, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return round(statistics.median(wall) * 1000, 1), round(statistics.median(cpu) * 1000, 1)


def _case(name: str, jpeg: bytes, rounds: int) -> dict[str, Any]:
    row: dict[str, Any] = {"image": name, "megapixels": SIZE[0] * SIZE[1] / 1e6}
    for gravity in GRAVITIES:
        params = THUMBNAIL.parse_params({**SPEC, "gravity": gravity})
        row[f"{gravity}_ms"], row[f"{gravity}_cpu_ms"] = _median_ms(
            lambda p=params: THUMBNAIL.run(jpeg, p, Limits()), rounds
        )
        if gravity != "centre":
            row[f"{gravity}_added_ms"] = round(row[f"{gravity}_ms"] - row["centre_ms"], 1)
            row[f"{gravity}_added_cpu_ms"] = round(row[f"{gravity}_cpu_ms"] - row["centre_cpu_ms"], 1)
            row[f"{gravity}_details"] = dict(THUMBNAIL.run(jpeg, params, Limits()).details)
    decoded = load(open_image(jpeg, Limits()), draft_size=(1000, 750))  # what the step decodes for 720×588
    row["decoded_size"] = list(decoded.size)
    for gravity in ("auto", "face", "attention"):
        row[f"{gravity}_detect_ms"], row[f"{gravity}_detect_cpu_ms"] = _median_ms(
            lambda g=gravity: focus.detect(decoded, SIZE, g), rounds
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    rows = [_case(name, jpeg, args.rounds) for name, jpeg in _photos().items()]
    worst = max(row[f"{g}_added_ms"] for row in rows for g in ("auto", "face", "attention"))
    worst_cpu = max(row[f"{g}_added_cpu_ms"] for row in rows for g in ("auto", "face", "attention"))
    print(
        json.dumps(
            {
                "benchmark": "gravity",
                "spec": ",".join(f"{k}={v}" for k, v in SPEC.items()),
                "cpu": "one core (affinity), OpenCV on one thread",
                "face_detector": focus.face_detector(),
                "rounds": args.rounds,
                "goal_added_ms": GOAL_MS,
                "worst_added_ms": worst,
                "worst_added_cpu_ms": worst_cpu,
                "within_goal": worst <= GOAL_MS,
                "cases": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
