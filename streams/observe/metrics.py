"""Every Prometheus metric darkroom exports, defined once (README, *Metrics*).

Names follow Prometheus' conventions (``darkroom_…_total`` counters, ``…_seconds``
durations) and labels stay low-cardinality: worker, topic, partition, operation,
backend, error code, dependency, outcome — never an image id.

Several worker processes on one machine (``darkroom run --processes``) share one port
through prometheus-client's multiprocess mode: each child writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and the supervisor's endpoint adds them up. One port per
machine keeps a pod's scrape config and its probes simple, and counters survive a
crashed child. Gauges state how the processes' values combine (``multiprocess_mode``).

prometheus-client creates a labelled series only at its first use, and ``rate()`` and
``increase()`` ignore a series' first sample: a counter born at 1 reads as no increase,
so an alert on the first dead letter of a fresh pod would never fire. Every series whose
label values are known in advance is therefore created at zero when a process starts
(``services_at_zero``) and when a worker starts its loop (``worker_at_zero``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

RECORDS_CONSUMED = Counter(
    "darkroom_records_consumed_total", "Records taken from a topic by a consumer group.", ["group", "topic"]
)
RECORDS_PRODUCED = Counter(
    "darkroom_records_produced_total", "Records produced and acknowledged by the broker.", ["group", "topic"]
)
STEP_DURATION = Histogram(
    "darkroom_step_duration_seconds",
    "Time of one pipeline step (read, operation, writes), by operation and backend.",
    ["operation", "backend"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
FAILURES = Counter(
    "darkroom_failures_total", "Images failed, by the step that failed them and error code.", ["step", "code"]
)
RETRIES = Counter("darkroom_retries_total", "Calls retried after a retryable error, by dependency.", ["dependency"])
PAUSES = Counter(
    "darkroom_pauses_total", "Times a worker paused its partitions to wait out an outage.", ["worker", "dependency"]
)
PAUSED = Gauge(
    "darkroom_worker_paused",
    "1 while the worker waits out an outage of this dependency.",
    ["worker", "dependency"],
    multiprocess_mode="livemax",
)
DEAD_LETTERS = Counter("darkroom_dead_letters_total", "Records sent to the dead-letter topic.", ["group", "code"])
WEBHOOK_ATTEMPTS = Counter(
    "darkroom_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, exhausted, disabled, lost, crashed).",
    ["outcome"],
)
RESULT_BATCH_SIZE = Histogram(
    "darkroom_result_batch_size",
    "Final events written per result-writer transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
RESULT_TRANSACTION = Histogram(
    "darkroom_result_transaction_seconds",
    "Time of one result-writer transaction.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
IN_FLIGHT = Gauge(
    "darkroom_images_in_flight",
    "Records a worker has taken and not yet committed.",
    ["worker"],
    multiprocess_mode="livesum",
)
STALLS = Counter(
    "darkroom_worker_stalls_total",
    "Times a worker's watchdog found it stalled (lag nobody reads, positions past a partition's end,"
    " a member the broker forgot) and rebuilt its clients.",
    ["worker"],
)
RESTARTS = Counter(
    "darkroom_service_restarts_total", "Services (threads or processes) restarted after a crash.", ["service"]
)
CONSUMER_LAG = Gauge(
    "darkroom_consumer_lag",
    "Records after the group's committed offset, per partition (high watermark of fetched data"
    " minus committed position). Only the partition's owner reports it; others hold 0.",
    ["group", "topic", "partition"],
    multiprocess_mode="livemax",
)


def exported_name(metric: Counter | Gauge | Histogram) -> str:
    """The name ``metric``'s samples are exported under: a counter's with its ``_total``
    (prometheus-client keeps the name without it); a histogram's buckets add ``_bucket``."""
    return metric._name + ("_total" if isinstance(metric, Counter) else "")


NAMES = tuple(
    sorted(
        exported_name(m)
        for m in (
            RECORDS_CONSUMED,
            RECORDS_PRODUCED,
            STEP_DURATION,
            FAILURES,
            RETRIES,
            PAUSES,
            PAUSED,
            DEAD_LETTERS,
            WEBHOOK_ATTEMPTS,
            RESULT_BATCH_SIZE,
            RESULT_TRANSACTION,
            IN_FLIGHT,
            STALLS,
            RESTARTS,
            CONSUMER_LAG,
        )
    )
)
"""The exported names (counters with their ``_total``), for the README and manifest checks."""


def dependency_of(code: str) -> str:
    """``storage_unavailable`` → ``storage``: the dependency an outage's error code names."""
    return code.removesuffix("_unavailable")


def registry() -> CollectorRegistry:
    """What ``/metrics`` serves: this process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR``
    set, the sum over every process writing there."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


WEBHOOK_OUTCOMES = ("delivered", "retry", "exhausted", "disabled", "lost", "crashed")
"""Every value ``darkroom_webhook_attempts_total``'s ``outcome`` takes (``sinks.dispatcher``)."""
STEPS = "ingest"
"""Besides the operations, the one ``step`` that fails images (``handlers.steps``)."""


def error_codes() -> tuple[str, ...]:
    """Every code of darkroom's error tree: what a failure or a dead letter can be labelled with."""
    import streams.errors  # noqa: F401  (grows the tree below processors' root)
    from processors.errors import DarkroomError

    codes, todo = set(), [DarkroomError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    return tuple(sorted(codes))


def dependencies() -> tuple[str, ...]:
    """The dependencies an outage can name: storage, broker, registry, database."""
    from streams.errors import DependencyUnavailable

    found, todo = set(), list(DependencyUnavailable.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.code.endswith("_unavailable"):  # a subclass without a code of its own names none
            found.add(dependency_of(cls.code))
        todo.extend(cls.__subclasses__())
    return tuple(sorted(found))


def backends(operation: str) -> tuple[str, ...]:
    """What a step of ``operation`` may report as its ``backend``. Upscale's list is the
    engine's (importing it imports torch: only an upscale process asks)."""
    if operation == "upscale":
        from processors.upscale.engine import BACKENDS

        return tuple(BACKENDS)
    return ("pillow",)


def services_at_zero(names: Iterable[str]) -> None:
    """Create at zero the series of the services this process runs (``darkroom worker
    NAME``, ``darkroom run``): restarts, stalls, pauses, retries, the failures of the steps
    among them, their step durations, and the webhook outcomes when the dispatcher is one."""
    from processors import KNOWN_OPERATIONS

    names = tuple(names)
    outages = dependencies()
    codes = error_codes()
    for dependency in outages:
        RETRIES.labels(dependency)
    for name in names:
        RESTARTS.labels(name)
        STALLS.labels(name)
        for dependency in outages:
            PAUSES.labels(name, dependency)
            PAUSED.labels(name, dependency).set(0)
        if name == STEPS or name in KNOWN_OPERATIONS:
            for code in codes:
                FAILURES.labels(name, code)
        if name in KNOWN_OPERATIONS:
            for backend in backends(name):
                STEP_DURATION.labels(name, backend)
        if name == "webhooks":
            for outcome in WEBHOOK_OUTCOMES:
                WEBHOOK_ATTEMPTS.labels(outcome)


def worker_at_zero(name: str, group: str, topics: Iterable[str]) -> None:
    """Create at zero the series of one consumer loop: records consumed per topic, dead
    letters per code, stalls; the first record and the first dead letter then count."""
    STALLS.labels(name)
    for topic in topics:
        RECORDS_CONSUMED.labels(group, topic)
    for code in error_codes():
        DEAD_LETTERS.labels(group, code)
