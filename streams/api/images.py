"""The image resource behind the HTTP API: create, start, direct upload, status, outputs, reprocess.

Nothing here speaks HTTP: the routes (``streams.api.app``) turn requests into these calls
and their answers and errors into responses. Uploads go out through the producer SDK
(``streams.client.Client``: the same validation, callback check and upload event as
``darkroom submit``), every one with the idempotency key ``api/<image id>``, so a start
that runs twice (a retry, two clients at once) emits the same event id and the sinks see
one upload. Statuses come from the result store: an image is ``pending`` until it is
started, ``processing`` until the result writer has recorded the final state of its
latest upload, then ``completed`` or ``failed``.

The image's row names the pipeline of its latest upload (a reprocess with another pipeline
moves it), so that ``GET`` names the pipeline of the outputs it lists. Those outputs come
from the result store and are presigned only where they are the image's own (in its bucket,
under ``<output prefix>/<image id>/``): a forged or damaged result row cannot make the API
hand out another image's objects or the broker's log.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog

from processors.errors import FileTooLarge, InvalidParameters, InvalidPipeline
from streams.api.problems import ApiProblem
from streams.client import Client
from streams.config import Settings, mask_url
from streams.errors import ObjectMissing
from streams.replay.replay import ReplayOptions, replayed
from streams.runtime.egress import EgressGuard
from streams.runtime.retry import retry
from streams.runtime.storage import ObjectStore
from streams.sinks.database import Database, Row, now_ms
from streams.sinks.results import get_result
from streams.wire import pipeline as pipelines
from streams.wire.events import IMAGE_ID, api_order_key, is_output_of, upload_event, upload_key
from streams.wire.events import safe_filename as safe_filename  # what request parsing names files by

DOWNLOAD_URL_TTL = timedelta(hours=1)
"""How long an output's download URL works (as ``darkroom status``'s)."""
_log = structlog.get_logger("darkroom.api")


@dataclass(frozen=True)
class Order:
    """What to run on an image, validated: the steps, the preset they came from, the callback."""

    steps: list[pipelines.Step]
    preset: str | None
    callback_url: str | None


def new_id(tenant: str, idempotency_key: str | None, length: int = 20) -> str:
    """A fresh id, or one derived from the request's Idempotency-Key: a retry of a request
    whose answer was lost (the server died after emitting) then names the same image (or
    replay) and so emits the same event id."""
    if idempotency_key is None:
        return uuid.uuid4().hex[:length]
    return hashlib.sha256(f"{tenant}\n{idempotency_key}".encode()).hexdigest()[:length]


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class Images:
    """The API's image logic, shared by every request thread (each call is its own transaction)."""

    def __init__(self, settings: Settings, db: Database, client: Client) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self.store: ObjectStore = client.store
        self._guard = EgressGuard.from_settings(settings)

    # -- requests -------------------------------------------------------------------
    def order(
        self, pipeline: str | Sequence[pipelines.Step] | None, preset: str | None, callback_url: str | None
    ) -> Order:
        """Validate what a request asks for: exactly one of ``pipeline`` (a spec or steps) and ``preset``."""
        if (pipeline is None) == (preset is None):
            raise InvalidPipeline("give exactly one of pipeline (a spec or a list of steps) and preset")
        if preset is not None:
            if preset not in pipelines.PRESETS:
                raise InvalidPipeline(f"unknown preset {preset!r}; presets: {', '.join(sorted(pipelines.PRESETS))}")
            steps = pipelines.parse_spec(pipelines.PRESETS[preset])
        elif isinstance(pipeline, str):
            steps = pipelines.parse_spec(pipeline)
        else:
            steps = [{"operation": s["operation"], "params": dict(s["params"])} for s in pipeline or ()]
            if not steps:
                raise InvalidPipeline("empty pipeline: name at least one operation or a preset")
        pipelines.validate(steps)
        if callback_url is not None:
            if not self.settings.webhook_secrets:
                raise InvalidParameters("callback_url: this server has no DARKROOM_WEBHOOK_SECRETS to sign webhooks")
            self._guard.admit(callback_url)
        return Order(steps, preset, callback_url)

    def create(self, tenant: str, order: Order, image_id: str, filename: str | None) -> Row:
        """Register an image whose bytes the caller will PUT to the returned ``upload_url``.

        What the image is to become is also written beside the upload (``api_order_key``), so
        that where the store sends notifications, the notification ingest starts it as soon
        as the bytes land, with the same event id ``start`` would give it."""
        key = upload_key(image_id, filename)
        ttl = self.settings.api_upload_url_ttl_s
        self._insert(tenant, image_id, key, order, upload_expires_at=now_ms() + ttl * 1000)
        row = self._own(tenant, image_id)
        ticket = {
            "image_id": image_id,
            "tenant": tenant,
            "key": key,
            "pipeline": order.steps,
            "callback_url": order.callback_url,
        }
        s = self.settings
        put = partial(
            self.store.put,
            row["bucket"],
            api_order_key(s.output_prefix, image_id),
            json.dumps(ticket).encode(),
            content_type="application/json",
        )
        retry(put, attempts=s.storage_attempts, backoff_s=s.storage_backoff_s, what="write the order")
        row["upload_url"] = self.store.presigned_put(row["bucket"], row["object_key"], timedelta(seconds=ttl))
        return row

    def start(self, tenant: str, image_id: str) -> Row:
        """Emit the upload event of an image whose bytes have landed; again: nothing new."""
        row = self._own(tenant, image_id)
        if row["started_at"] is not None:
            return row
        try:
            size = self.store.stat(row["bucket"], row["object_key"]).size
        except ObjectMissing:
            raise ObjectMissing("nothing was uploaded yet: PUT the image to upload_url first") from None
        if size > self.settings.max_file_bytes:
            raise FileTooLarge(f"the upload is {size} bytes; the limit is {self.settings.max_file_bytes}")
        sub = self.client.emit(
            row["object_key"],
            json.loads(row["pipeline"]),
            bucket=row["bucket"],
            image_id=image_id,
            callback_url=row["callback_url"],
            tenant=tenant,
            idempotency_key=f"api/{image_id}",
        )
        self._started(image_id, sub.event_id)
        return self._own(tenant, image_id)

    def submit(self, tenant: str, order: Order, image_id: str, data: bytes, filename: str | None, ctype: str) -> Row:
        """Store the bytes and emit the upload event at once (the direct upload), as
        ``Client.submit`` does for every producer. The image is recorded first (under the
        key ``Client.submit`` stores it at): an outage after that leaves a ``pending`` image
        its owner can see and ``start``, never one processed that ``GET`` does not know."""
        if len(data) > self.settings.max_file_bytes:
            raise FileTooLarge(f"the body is over the {self.settings.max_file_bytes}-byte limit")
        self._insert(tenant, image_id, upload_key(image_id, filename), order, upload_expires_at=None)
        sub = self.client.submit(
            data,
            filename,
            order.steps,
            image_id=image_id,
            content_type=ctype,
            callback_url=order.callback_url,
            tenant=tenant,
            idempotency_key=f"api/{image_id}",
        )
        self._started(image_id, sub.event_id)
        return self._own(tenant, image_id)

    def reprocess(
        self, tenant: str, image_id: str, pipeline: str | Sequence[pipelines.Step] | None, force: bool, replay_id: str
    ) -> Row:
        """Re-drive the image as ``darkroom replay --image-id`` would: a new upload event
        (``replay_of`` the first one), the pipeline of its latest upload unless another is
        given (which then becomes the image's); without ``force`` finished outputs are reused."""
        row = self._own(tenant, image_id)
        first = row["first_event_id"]
        if first is None:  # started by the notification ingest, if at all
            result = self._result(row)
            if result is None:
                raise ApiProblem("not_started", f"image {image_id} was never started: nothing to reprocess")
            first = result["upload_event_id"]
        steps = None if pipeline is None else self.order(pipeline, None, None).steps
        original = upload_event(
            event_id=first,
            image_id=image_id,
            bucket=row["bucket"],
            key=row["object_key"],
            pipeline=json.loads(row["pipeline"]),
            callback_url=row["callback_url"],
            tenant=tenant,
            idempotency_key=f"api/{image_id}",
            submitted_at=datetime.now(UTC),
        )
        event = replayed(original, replay_id, ReplayOptions(pipeline=steps, force=force))
        self.client.send(event)
        self._started(image_id, event["event_id"], steps)
        return self._own(tenant, image_id)

    # -- answers ------------------------------------------------------------------------
    def view(self, tenant: str, image_id: str) -> dict[str, Any]:
        """The image as ``GET /v1/images/{id}`` shows it."""
        row = self._own(tenant, image_id)
        result = self._result(row)
        current = result is not None and (
            result["upload_event_id"] == row["upload_event_id"] or result["submitted_at"] >= (row["emitted_at"] or 0)
        )
        status = result["status"] if result is not None and current else "processing"
        if row["started_at"] is None and result is None:
            status = "processing" if self._landed(row) else "pending"
        view: dict[str, Any] = {
            "id": image_id,
            "status": status,
            "pipeline": pipelines.format_spec(json.loads(row["pipeline"])),
            "preset": row["preset"],
            "callback_url": mask_url(row["callback_url"]) if row["callback_url"] else None,
            "created_at": iso(row["created_at"]),
            "started_at": iso(row["started_at"]),
            "upload_event_id": row["upload_event_id"],
            "finished_at": None,
            "outputs": [],
            "timings": [],
            "error": None,
        }
        if result is None or not current:
            return view
        view["upload_event_id"] = result["upload_event_id"]
        view["finished_at"] = iso(result["finished_at"])
        expires = iso(now_ms() + int(DOWNLOAD_URL_TTL.total_seconds() * 1000))
        served = [o for o in result["outputs"] if self._served(row, o)]
        view["outputs"] = [
            {
                "name": o["name"],
                "step_index": o["step_index"],
                "operation": o["operation"],
                "content_type": o["content_type"],
                "size": o["size"],
                "width": o["width"],
                "height": o["height"],
                "sha256": o["sha256"],
                "url": self.store.presigned_get(o["bucket"], o["key"], DOWNLOAD_URL_TTL),
                "url_expires_at": expires,
            }
            for o in served
        ]
        view["timings"] = [
            {k: t.get(k) for k in ("step_index", "operation", "backend", "duration_ms", "reused", "details")}
            for t in result["timings"]
        ]
        if result["status"] == "failed":
            view["error"] = {
                "code": result["error_code"],
                "message": result["message"],
                "retryable": bool(result["retryable"]),
                "failed_step": result["failed_step"],
            }
        return view

    def output_url(self, tenant: str, image_id: str, name: str) -> str:
        """A download URL of the output called ``name`` (the last step's, when several steps have one)."""
        view = self.view(tenant, image_id)
        for output in reversed(view["outputs"]):
            if name in (output["name"], f"{output['step_index']}-{output['operation']}-{output['name']}"):
                return str(output["url"])
        raise ApiProblem("not_found", f"image {image_id} has no output {name!r} (yet)")

    def operations(self) -> dict[str, Any]:
        """What ``darkroom operations`` lists: each parameter's default and what it accepts, and the presets."""
        return pipelines.catalog()

    def models(self) -> dict[str, Any]:
        """The upscale models as ``darkroom models list`` shows them (no paths: they are the server's business)."""
        from processors.upscale import weights  # imports torch: only when asked

        directory = self.settings.upscale().model_dir  # where `models fetch` puts them
        return {
            "models": [
                {k: getattr(m, k) for k in ("name", "description", "present", "source", "sha256", "size")}
                for m in weights.list_models(directory)
            ]
        }

    # -- storage --------------------------------------------------------------------------
    def _own(self, tenant: str, image_id: str) -> Row:
        """The tenant's image; another tenant's answers exactly like one that does not exist."""
        if IMAGE_ID.fullmatch(image_id):
            with self.db.transaction() as tx:
                rows = tx.query("SELECT * FROM api_images WHERE id = ? AND tenant = ?", (image_id, tenant))
            if rows:
                return rows[0]
        raise ApiProblem("not_found", f"no image {image_id}")

    def _landed(self, row: Row) -> bool:
        """Whether the upload of an image not started here is in the store while the
        notification ingest runs (it starts such images itself)."""
        if not self.settings.notifications_topic:
            return False
        try:
            self.store.stat(row["bucket"], row["object_key"])
        except ObjectMissing:
            return False
        return True

    def _served(self, row: Row, output: Row) -> bool:
        """Whether ``output`` of a stored result is the image's own, to presign: an object in
        the image's bucket under its output prefix (``is_output_of``). Any other is left out
        as if it did not exist, and logged: only a forged or damaged result row names one."""
        if output["bucket"] == row["bucket"] and is_output_of(output["key"], self.settings.output_prefix, row["id"]):
            return True
        _log.warning(
            "stored output outside the image's own prefix left out",
            image_id=row["id"],
            bucket=output["bucket"],
            key=output["key"],
        )
        return False

    def _result(self, row: Row) -> Row | None:
        """The stored result of the image ``row`` names, if it is of that image's own upload:
        its tenant, bucket and upload key. A result made of another object under the same
        id (a forged upload sent before the image was created, its id foreseen) is none."""
        result = get_result(self.db, row["id"])
        if result is None:
            return None
        own = (row["tenant"], row["bucket"], row["object_key"])
        return result if (result["tenant"], result["bucket"], result["source_key"]) == own else None

    def _insert(self, tenant: str, image_id: str, key: str, order: Order, *, upload_expires_at: int | None) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                """
                INSERT INTO api_images (id, tenant, bucket, object_key, pipeline, preset, callback_url, created_at,
                                        upload_expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                """,
                (
                    image_id,
                    tenant,
                    self.settings.bucket,
                    key,
                    json.dumps(order.steps),
                    order.preset,
                    order.callback_url,
                    now_ms(),
                    upload_expires_at,
                ),
            )

    def _started(self, image_id: str, event_id: str, steps: list[pipelines.Step] | None = None) -> None:
        """Record the upload event just emitted as the image's latest, with ``steps`` where
        it runs another pipeline than the image's (a reprocess): the image is that pipeline's now."""
        now = now_ms()
        with self.db.transaction() as tx:
            if steps is not None:
                tx.execute(
                    "UPDATE api_images SET pipeline = ?, preset = NULL WHERE id = ?", (json.dumps(steps), image_id)
                )
            tx.execute(
                """
                UPDATE api_images
                SET started_at = COALESCE(started_at, ?), first_event_id = COALESCE(first_event_id, ?),
                    upload_event_id = ?, emitted_at = ?
                WHERE id = ?
                """,
                (now, event_id, event_id, now, image_id),
            )
