"""The one durable send outside the loop: records acknowledged, or an error raised.

The worker loop delivers its own outputs and commits after them (``streams.runtime.worker``).
Producers that answer a caller instead (``Client.send`` for every upload the SDK, the CLI and
the HTTP API emit, ``darkroom replay`` for its batches) send here: ``send`` returns only once
the broker acknowledged every record (idempotent producer, ``acks=all``), raises
``BrokerUnavailable`` when it did not, and ``OutputRejected`` for a record it refused for good.
A producer whose delivery failed is dropped (``discard_producer``: it may be fenced, and is
never retried) and the next send gets a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from confluent_kafka import Producer

from streams.config import Settings
from streams.errors import BrokerUnavailable, OutputRejected
from streams.runtime.kafka import Record, deliver, discard_producer, make_producer


class Sender:
    """One producer kept across sends; safe to share between threads (the HTTP API's)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._producer: Producer | None = self._new()  # a bad setting fails here, not at the first send

    def _new(self) -> Producer:
        return make_producer(self.settings, self.settings.client_timeout_s)

    def send(self, records: Sequence[Record], what: str) -> None:
        """Deliver ``records`` (``what`` they are, for the refusal's message) and wait for every acknowledgement."""
        with self._lock:
            if self._producer is None:
                self._producer = self._new()
            producer = self._producer
        try:
            refused = deliver(producer, records)
        except BrokerUnavailable:
            with self._lock:  # once, by the first thread whose send through it failed
                if self._producer is producer:
                    self._producer = None
                    discard_producer(producer)
            raise
        if refused:
            raise OutputRejected(f"the broker refused {what}: {next(iter(refused.values()))}")

    def close(self) -> None:
        """Flush what is queued and release the producer's connections."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(10)
