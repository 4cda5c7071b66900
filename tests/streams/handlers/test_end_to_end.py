"""The pipeline on a real broker and a real S3 server: good images, bad inputs, redelivery."""

from __future__ import annotations

import hashlib
import io
import struct
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from PIL import Image, ImageDraw

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import OperationStep, worker_specs
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import DEAD_LETTER, FAILED, UPLOADED
from streams.wire.events import Serdes
from tests.helpers import decode_all, produce, read_topic

pytestmark = pytest.mark.integration


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares ``width`` × ``height`` (a pixel bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def test_an_upload_reaches_a_completion_event_with_real_outputs(
    settings: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    client = Client(settings, store)
    sub = client.submit(photo_jpeg(1200, 800, seed=3), "photo.jpg", "thumbnail:sizes=256+100x60,format=webp")
    final = client.wait([sub], timeout_s=90)[sub.image_id]
    assert final.status == "completed", final.event
    outputs = final.event["outputs"]
    assert [(o["width"], o["height"]) for o in outputs] == [(256, 171), (90, 60)]
    for o in outputs:
        data = store.get(o["bucket"], o["key"])
        assert hashlib.sha256(data).hexdigest() == o["sha256"]
        assert o["size"] == len(data)
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "WEBP" and img.size == (o["width"], o["height"])
    (timing,) = final.event["timings"]
    assert timing["operation"] == "thumbnail" and timing["backend"] and timing["duration_ms"] > 0


def test_bad_inputs_fail_with_codes_and_the_partition_keeps_moving(
    settings: Settings, store: ObjectStore, workers: Supervisor
) -> None:
    client = Client(settings, store)
    good = photo_jpeg(800, 600, seed=4)
    bad = {
        "not_an_image": b"this is a text file, not a picture\n" * 10,
        "truncated_image": good[: len(good) // 2],
        "too_many_pixels": _png_claiming(30000, 30000),
        "empty_input": b"",
    }
    subs = {
        code: client.submit(data, f"{code}.jpg", "thumbnail:sizes=128", image_id=f"bad-{code}")
        for code, data in bad.items()
    }
    # Events a producer could send but our client refuses to: raw upload events.
    serdes = Serdes(settings)
    raw = {
        "object_missing": ("uploads/nowhere/missing.jpg", [{"operation": "thumbnail", "params": {}}]),
        "unknown_operation": (subs["not_an_image"].key, [{"operation": "sharpen", "params": {}}]),
        # A bad parameter in a later step fails the image before the first step runs.
        "later_step_invalid": (
            subs["not_an_image"].key,
            [{"operation": "thumbnail", "params": {}}, {"operation": "upscale", "params": {"scale": "99"}}],
        ),
        "invalid_parameters": (subs["not_an_image"].key, [{"operation": "thumbnail", "params": {"sizes": "0"}}]),
    }
    topic = settings.topic(UPLOADED)
    for code, (key, steps) in raw.items():
        event = {
            "event_id": f"raw-{code}",
            "image_id": f"bad-{code}",
            "bucket": settings.bucket,
            "key": key,
            "pipeline": steps,
            "submitted_at": datetime.now(UTC),
        }
        produce(settings, UPLOADED, f"bad-{code}", serdes.upload.encode(event, topic))
    produce(settings, UPLOADED, "bad-garbage", b"\x00\x01garbage that is not avro")
    good_sub = client.submit(good, "good.jpg", "thumbnail:sizes=128")

    final = client.wait([good_sub], timeout_s=90)
    assert final[good_sub.image_id].status == "completed"

    failures = decode_all(read_topic(settings, settings.topic(FAILED), expect=len(bad) + len(raw)), serdes.failed)
    codes = {f["image_id"]: f for f in failures}
    expected = {name: name for name in [*bad, *raw]} | {"later_step_invalid": "invalid_parameters"}
    for name, code in expected.items():
        failure = codes[f"bad-{name}"]
        assert failure["error_code"] == code, failure
        assert failure["message"]
        assert failure["retryable"] is False
    later = codes["bad-later_step_invalid"]
    assert (later["step_index"], later["failed_step"], later["timings"]) == (1, "upscale", [])

    (dead,) = read_topic(settings, settings.topic(DEAD_LETTER), expect=1)
    assert dead.key == "bad-garbage"
    assert dead.value == b"\x00\x01garbage that is not avro"
    assert dead.headers["darkroom-error-code"] == b"undecodable_event"
    assert dead.headers["darkroom-source-topic"] == topic.encode()


def test_a_redelivered_step_reuses_finished_outputs(settings: Settings, store: ObjectStore) -> None:
    import structlog

    from processors import get_operation
    from streams.wire import events
    from streams.wire.pipeline import parse_spec

    image_id = f"redeliver-{uuid.uuid4().hex}"
    key = f"uploads/{image_id}/a.jpg"
    store.put(settings.bucket, key, photo_jpeg(640, 480, seed=5), content_type="image/jpeg")
    upload = {
        "event_id": image_id,
        "image_id": image_id,
        "bucket": settings.bucket,
        "key": key,
        "submitted_at": datetime.now(UTC),
    }
    request = events.step_request(
        upload, upload_event_id=image_id, pipeline=parse_spec("thumbnail:sizes=64+32"), step_index=0, input_key=key
    )
    serdes = Serdes(settings)
    step = OperationStep(settings, serdes, store, get_operation("thumbnail"))
    log = structlog.get_logger("test")
    first = serdes.completed.decode(step(request, log)[0].value, "")
    second = serdes.completed.decode(step(request, log)[0].value, "")
    assert first["event_id"] == second["event_id"]
    assert first["outputs"] == second["outputs"]
    assert [t["reused"] for t in first["timings"]] == [False]
    assert [t["reused"] for t in second["timings"]] == [True]


def test_a_chain_of_default_steps_keeps_alpha(settings: Settings, store: ObjectStore) -> None:
    """``enhance,thumbnail`` on an RGBA PNG, every format left at ``auto``: each step's
    output is a PNG that still has its transparent pixels (before, both were opaque JPEGs)."""
    img = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (50, 50, 250, 150))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "enhance", "thumbnail"]))
    supervisor.start()
    try:
        client = Client(settings, store)
        sub = client.submit(buffer.getvalue(), "logo.png", "enhance,thumbnail:sizes=128")
        final = client.wait([sub], timeout_s=120)[sub.image_id]
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert final.status == "completed", final.event
    assert [(o["operation"], o["content_type"]) for o in final.event["outputs"]] == [
        ("enhance", "image/png"),
        ("thumbnail", "image/png"),
    ]
    for o in final.event["outputs"]:
        with Image.open(io.BytesIO(store.get(o["bucket"], o["key"]))) as out:
            assert out.mode == "RGBA"
            assert out.getpixel((0, 0))[3] == 0 and out.getpixel((out.width // 2, out.height // 2))[3] == 255


def _product_on_white() -> tuple[bytes, Image.Image]:
    """A blue rounded box on a white backdrop, as a JPEG, and its exact coverage (drawn at 4×)."""
    import numpy as np

    width, height, ss = 640, 480, 4
    truth = Image.new("L", (width * ss, height * ss), 0)
    ImageDraw.Draw(truth).rounded_rectangle((200 * ss, 90 * ss, 420 * ss, 400 * ss), radius=40 * ss, fill=255)
    truth = truth.resize((width, height), Image.Resampling.BOX)
    rng = np.random.default_rng(1)
    colour = np.empty((height, width, 3), np.float32)
    colour[...] = (0, 70, 150)
    colour[..., 0] += np.linspace(30, 90, width)
    colour += rng.normal(0, 4, colour.shape)
    alpha = np.asarray(truth, np.float32)[..., None] / 255
    pixels = (alpha * colour + (1 - alpha) * 250).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), truth


def test_cutout_then_thumbnail_through_kafka_keeps_the_cut_and_refuses_a_busy_photo(
    settings: Settings, store: ObjectStore
) -> None:
    """``cutout,thumbnail``: a product on white becomes a transparent PNG whose thumbnail
    keeps the product's outline; a busy photo fails with ``background_not_plain`` (strict,
    the default) or completes flagged ``trusted=false`` (``strict=false``), and the
    partition moves on."""
    import numpy as np

    product, truth = _product_on_white()
    busy = photo_jpeg(800, 600, seed=4)
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "cutout", "thumbnail"]))
    supervisor.start()
    try:
        client = Client(settings, store)
        subs = {
            "product": client.submit(product, "sku.jpg", "cutout,thumbnail:sizes=160"),
            "busy": client.submit(busy, "scene.jpg", "cutout,thumbnail:sizes=160"),
            "lenient": client.submit(busy, "scene.jpg", "cutout:strict=false,thumbnail:sizes=160"),
        }
        finals = client.wait(list(subs.values()), timeout_s=120)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    done = finals[subs["product"].image_id]
    assert done.status == "completed", done.event
    cut, thumb = done.event["outputs"]
    assert (cut["operation"], cut["content_type"], thumb["operation"], thumb["content_type"]) == (
        "cutout",
        "image/png",
        "thumbnail",
        "image/png",
    )
    assert done.event["timings"][0]["details"]["trusted"] == "true"
    with Image.open(io.BytesIO(store.get(thumb["bucket"], thumb["key"]))) as out:
        assert out.mode == "RGBA" and out.size == (160, 120)
        kept = np.asarray(out.getchannel("A")) >= 128
    want = np.asarray(truth.resize(out.size, Image.Resampling.BOX)) >= 128
    assert (kept & want).sum() / (kept | want).sum() >= 0.95

    refused = finals[subs["busy"].image_id]
    assert refused.status == "failed", refused.event
    assert (refused.event["error_code"], refused.event["retryable"], refused.event["failed_step"]) == (
        "background_not_plain",
        False,
        "cutout",
    )
    flagged = finals[subs["lenient"].image_id]
    assert flagged.status == "completed", flagged.event
    details = flagged.event["timings"][0]["details"]
    assert details["trusted"] == "false" and float(details["confidence"]) < 0.5 and details["reason"]
