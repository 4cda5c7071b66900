"""The loop under real faults: the object store stopped and frozen, the schema registry
gone, records that make a handler or a sink raise, outputs the broker refuses.

The test that stops and freezes the object store runs on services of its own, so the
rest of the suite never sees the fault: SeaweedFS from the embedded stack, and a tansu
broker keeping its log in memory, so that the outage is the object store's alone (the
embedded default keeps the broker's log in that store too: benchmarks/chaos.py breaks
them together).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog.testing
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.client import Client
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, tansu_binary, throwaway_settings
from streams.handlers.steps import ingest_spec, worker_specs
from streams.runtime.kafka import make_consumer
from streams.runtime.offsets import committed_lag
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import DEAD_LETTER, FAILED, UPLOADED, ensure_topics, step_topic
from streams.runtime.worker import WorkerSpec
from streams.wire.events import Serdes
from tests.helpers import decode_all, produce, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Stack, int]]:
    """Settings, the stack that runs the object store, and the broker's pid."""
    base = load_settings(
        home=tmp_path_factory.mktemp("fault-home"),
        session_timeout_ms=6000,
        log_format="json",
        storage_attempts=2,
        storage_backoff_s=0.05,
        retry_backoff_s=0.2,
        retry_max_backoff_s=2.0,
    )
    settings = throwaway_settings(base, base.home)
    url = f"tcp://127.0.0.1:{settings.kafka_port}"
    args = ["--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with (base.home / "broker.log").open("ab") as log:
        broker = subprocess.Popen(
            [str(tansu_binary()), "broker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    settings = settings.replace(kafka_bootstrap=f"127.0.0.1:{settings.kafka_port}")
    stack = Stack(settings)  # the object store alone: the broker is configured
    try:
        stack.up()
        yield settings, stack, broker.pid
    finally:
        stack.down()
        broker.terminate()
        broker.wait(10)


@pytest.fixture
def fault_settings(own_stack: tuple[Settings, Stack, int]) -> Settings:
    s = own_stack[0].replace(topic_prefix=f"f{uuid.uuid4().hex[:10]}.")
    ensure_topics(s)
    return s


def _weed_pid(stack: Stack) -> int:
    return stack._state()["weed"]


def _stop(pid: int) -> None:
    """SIGTERM, and SIGKILL if it has not stopped within 10 s (a busy SeaweedFS may linger)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    raise AssertionError(f"process {pid} did not stop")


def _lag(settings: Settings, group: str, topic: str) -> int:
    return committed_lag(settings, group, [topic])


def test_a_stopped_then_frozen_object_store_pauses_work_and_fails_nothing(
    own_stack: tuple[Settings, Stack, int], fault_settings: Settings
) -> None:
    """Longer than the storage retries' window (2 tries here): before, every image in
    flight ended ``storage_unavailable``; now the workers pause and all complete."""
    _, stack, _ = own_stack
    client = Client(fault_settings)
    spec = "thumbnail:sizes=64+256+512+1024"
    warmup = [client.submit(photo_jpeg(640, 480, seed=99), "w.jpg", spec)]
    with structlog.testing.capture_logs() as logs:
        supervisor = Supervisor(fault_settings, worker_specs(fault_settings, ["ingest", "thumbnail"]))
        supervisor.start()
        try:
            assert client.wait(warmup, timeout_s=60)  # the group is formed and images flow
            subs = [client.submit(photo_jpeg(1600, 1200, seed=i), f"p{i}.jpg", spec) for i in range(40)]
            _stop(_weed_pid(stack))  # refused connections
            time.sleep(12)
            stack.up()
            frozen = _weed_pid(stack)
            os.kill(frozen, signal.SIGSTOP)  # calls hang instead of failing
            time.sleep(10)
            os.kill(frozen, signal.SIGCONT)
            finals = client.wait(subs, timeout_s=240)
        finally:
            supervisor.stop.set()
            supervisor.join(60)
            client.close()  # its producer would outlive the module's broker, retrying it
    assert {s.image_id: finals[s.image_id].status for s in subs if s.image_id in finals} == {
        s.image_id: "completed" for s in subs
    }
    assert read_topic(fault_settings, fault_settings.topic(FAILED), idle_s=1.0) == []
    # the outage met work in flight: the workers paused on it
    paused = {e["error_code"] for e in logs if e["event"] == "dependency unavailable; paused, will retry"}
    assert "storage_unavailable" in paused


def _wait_for(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:g}s"
        time.sleep(0.1)


def test_a_worker_paused_when_the_group_takes_its_partitions_reads_them_again(
    own_stack: tuple[Settings, Stack, int], fault_settings: Settings
) -> None:
    """The bug behind the chaos runs' silent stalls, caused for real: a worker pauses on a
    dead object store; while it waits, the broker freezes past the session timeout, so the
    group takes the worker's partitions away; the wait ends before the group gives them
    back. librdkafka keeps a partition's pause through its loss, and the end of the wait
    resumed only what was assigned at that moment (nothing), so the partitions handed
    back stayed paused: the worker polled an empty consumer forever, alive and silent."""
    _, stack, broker = own_stack
    settings = fault_settings.replace(retry_backoff_s=16.0, retry_max_backoff_s=16.0)
    client = Client(settings)
    spec = "thumbnail:sizes=64+256+512+1024"
    warmup = [client.submit(photo_jpeg(640, 480, seed=99), "w.jpg", spec)]
    with structlog.testing.capture_logs() as logs:
        supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
        supervisor.start()
        try:
            assert client.wait(warmup, timeout_s=60)
            subs = [client.submit(photo_jpeg(1600, 1200, seed=i), f"p{i}.jpg", spec) for i in range(12)]
            _stop(_weed_pid(stack))

            def paused() -> bool:
                return any(e["event"] == "dependency unavailable; paused, will retry" for e in logs)

            _wait_for("a pause on the dead store", paused, 30)
            os.kill(broker, signal.SIGSTOP)  # the session times out inside the first wait (8–16 s)
            time.sleep(settings.retry_backoff_s + 2)  # ... which is over before the group answers again
            os.kill(broker, signal.SIGCONT)
            stack.up()
            finals = client.wait(subs, timeout_s=90)
        finally:
            os.kill(broker, signal.SIGCONT)
            supervisor.stop.set()
            supervisor.join(60)
            client.close()
    assert {s.image_id: finals[s.image_id].status for s in subs if s.image_id in finals} == {
        s.image_id: "completed" for s in subs
    }


def _poisoned(spec: WorkerSpec) -> WorkerSpec:
    """``spec`` whose handler raises, like a bug would, for the image called ``poison``."""
    assert spec.handle is not None
    handle = spec.handle

    def raising(event: dict[str, Any], log: Any) -> Any:
        if event["image_id"] == "poison":
            raise RuntimeError("a bug that only this record triggers")
        return handle(event, log)

    return dataclasses.replace(spec, handle=raising)


@pytest.mark.parametrize("where", ["ingest", "thumbnail"])
def test_a_poison_record_fails_alone_and_its_neighbours_complete(settings: Settings, store: Any, where: str) -> None:
    settings = settings.replace(retry_backoff_s=0.1, poison_attempts=3)
    specs = [
        _poisoned(spec) if spec.name == where else spec for spec in worker_specs(settings, ["ingest", "thumbnail"])
    ]
    client = Client(settings, store)
    before = [client.submit(photo_jpeg(300, 200, seed=i), f"a{i}.jpg", "thumbnail:sizes=32") for i in range(3)]
    poison = client.submit(photo_jpeg(300, 200, seed=9), "p.jpg", "thumbnail:sizes=32", image_id="poison")
    after = [client.submit(photo_jpeg(300, 200, seed=i), f"b{i}.jpg", "thumbnail:sizes=32") for i in range(3)]
    supervisor = Supervisor(settings, specs)
    supervisor.start()
    try:
        finals = client.wait([*before, poison, *after], timeout_s=90)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert {finals[s.image_id].status for s in [*before, *after]} == {"completed"}
    failure = finals["poison"].event
    assert finals["poison"].status == "failed"
    assert (failure["error_code"], failure["retryable"]) == ("processing_failed", True)
    # darkroom's typed message; the exception's class and text stay in the worker's log
    assert failure["message"] == f"{where} failed unexpectedly; the worker's log has the details"
    assert failure["failed_step"] == (None if where == "ingest" else "thumbnail")
    topic = UPLOADED if where == "ingest" else step_topic("thumbnail")
    assert _lag(settings, settings.topic(f"darkroom.{where}"), settings.topic(topic)) == 0


def test_dead_letters_keep_the_key_bytes_exactly_and_a_null_key_stays_null(settings: Settings) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers()})
    topic = settings.topic(UPLOADED)
    producer.produce(topic, key=b"\xff\xfe not utf-8", value=b"garbage one")
    producer.produce(topic, key=None, value=b"garbage two")
    producer.flush(10)
    supervisor = Supervisor(settings, [ingest_spec(settings, Serdes(settings))])
    supervisor.start()
    try:
        consumer = make_consumer(settings, f"dlq-{uuid.uuid4()}")
        dlq = settings.topic(DEAD_LETTER)
        parts = consumer.list_topics(dlq, timeout=10).topics[dlq].partitions
        consumer.assign([TopicPartition(dlq, p, OFFSET_BEGINNING) for p in parts])
        got: dict[bytes, bytes | None] = {}
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got[msg.value() or b""] = msg.key()
        consumer.close()
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert got == {b"garbage one": b"\xff\xfe not utf-8", b"garbage two": None}


def test_a_completion_too_large_for_the_broker_fails_the_image_with_a_clear_code(
    settings: Settings, store: Any
) -> None:
    """Sixteen renditions make a completion event over this worker's record limit: the
    broker's refusal is permanent, so the image fails with ``output_rejected`` instead
    of the worker retrying it forever."""
    settings = settings.replace(max_message_bytes=2048)
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
    client = Client(settings.replace(max_message_bytes=1_000_000), store)
    sizes = "+".join(str(16 + 8 * i) for i in range(16))
    big = client.submit(photo_jpeg(640, 480, seed=1), "big.jpg", f"thumbnail:sizes={sizes}")
    small = client.submit(photo_jpeg(640, 480, seed=2), "small.jpg", "thumbnail:sizes=32")
    supervisor.start()
    try:
        finals = client.wait([big, small], timeout_s=90)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert finals[small.image_id].status == "completed"
    failure = finals[big.image_id].event
    assert finals[big.image_id].status == "failed"
    assert failure["error_code"] == "output_rejected" and not failure["retryable"]
    assert "too large" in failure["message"].lower()
    failed = decode_all(read_topic(settings, settings.topic(FAILED), expect=1, idle_s=1.0), Serdes(settings).failed)
    assert [f["image_id"] for f in failed] == [big.image_id]


def test_undecodable_bytes_still_go_to_the_dead_letter_topic(settings: Settings) -> None:
    produce(settings, UPLOADED, "k", b"\xc3\x01" + b"\x00" * 8 + b"junk")
    supervisor = Supervisor(settings, [ingest_spec(settings, Serdes(settings))])
    supervisor.start()
    try:
        (dead,) = read_topic(settings, settings.topic(DEAD_LETTER), expect=1, timeout_s=60, idle_s=1.0)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert dead.headers["darkroom-error-code"] == b"undecodable_event"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_registry(port: int, state: Any) -> Any:
    import socket
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "tests.registry_stub", str(port), str(state)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise AssertionError("the registry stub did not start")


def test_an_unreachable_schema_registry_is_an_outage_not_a_dead_letter(
    settings: Settings, store: Any, tmp_path: Any
) -> None:
    """Confluent-framed uploads arrive while the registry is down: before, each went to the
    dead-letter topic as ``undecodable_event`` and was committed past; now the workers wait
    and every image completes once the registry answers (tests/registry_stub.py stands in
    for Confluent's registry: register by subject, fetch by id)."""
    port, state = _free_port(), tmp_path / "registry.json"
    settings = settings.replace(
        schema_registry_url=f"http://127.0.0.1:{port}", retry_backoff_s=0.2, retry_max_backoff_s=1.0
    )
    registry = _start_registry(port, state)
    client = Client(settings, store)
    subs = [client.submit(photo_jpeg(300, 200, seed=i), f"r{i}.jpg", "thumbnail:sizes=48") for i in range(4)]
    registry.terminate()
    registry.wait(10)
    supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
    supervisor.start()
    try:
        time.sleep(8)  # the workers read the uploads, cannot reach the registry, and wait
        registry = _start_registry(port, state)
        finals = Client(settings, store).wait(subs, timeout_s=120)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
        registry.terminate()
        registry.wait(10)
    assert {finals[s.image_id].status for s in subs if s.image_id in finals} == {"completed"}
    assert len(finals) == len(subs)
    assert read_topic(settings, settings.topic(DEAD_LETTER), idle_s=1.0) == []


def test_a_producer_the_broker_fenced_is_replaced_and_the_partitions_progress(settings: Settings, store: Any) -> None:
    """The worker's first producer is one the broker really fenced (a newer instance took
    its transactional id), as a frozen log store once made it fence an ingest worker's
    producer for 21 minutes; the worker must build a new one instead of retrying it."""
    import threading

    from confluent_kafka import Producer

    from streams.runtime.kafka import make_producer
    from streams.runtime.worker import Worker

    conf = {"bootstrap.servers": settings.bootstrap_servers(), "transactional.id": f"fenced-{uuid.uuid4()}"}
    fenced = Producer(conf)
    fenced.init_transactions(10)
    Producer(conf).init_transactions(10)  # the newer instance: the first one is fenced now
    fenced.begin_transaction()
    made: list[Any] = []

    def producers(s: Settings) -> Any:
        made.append(fenced if not made else make_producer(s))
        return made[-1]

    client = Client(settings, store)
    subs = [client.submit(photo_jpeg(200, 150, seed=i), f"f{i}.jpg", "thumbnail:sizes=32") for i in range(3)]
    worker = Worker(settings.replace(retry_backoff_s=0.1), ingest_spec(settings, Serdes(settings)), producers)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        requests = read_topic(settings, settings.topic(step_topic("thumbnail")), expect=3, timeout_s=60, idle_s=1.0)
    finally:
        stop.set()
        thread.join(30)
    assert len(made) >= 2 and made[0] is fenced
    assert {r.key for r in requests} == {s.image_id for s in subs}
    assert _lag(settings, settings.topic("darkroom.ingest"), settings.topic(UPLOADED)) == 0
