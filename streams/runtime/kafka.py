"""confluent-kafka clients configured once, and the one way to produce durably.

``deliver`` returns only after the broker acknowledged every record (acks=all,
idempotent producer): callers commit input offsets after it, never before. It sorts what
can go wrong the way the loop must react to it: a producer the library declares unusable
(``ProducerFailed``: fatal error, fenced) is to be rebuilt; a broker that did not answer
(``BrokerUnavailable``) is an outage to wait out; a record the broker refuses for good
(too large, unknown topic) comes back in the result, so its input can be failed with
``output_rejected`` instead of being retried forever; refused credentials or ACLs are
``AccessRefused``, which stops the worker rather than failing its backlog.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.errors import ConfigurationError
from streams.config import Settings, kafka_properties
from streams.errors import AccessRefused, BrokerUnavailable

_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._INVALID_ARG,
    }
)
"""Delivery errors that no retry can fix: the record, not the broker, is the problem."""

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
_DENIED = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})
"""Refused credentials or ACLs: the worker stops and says so instead of failing the backlog."""


class KafkaMessage(Protocol):
    """What the loop reads of a consumed record (``confluent_kafka.Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def error(self) -> KafkaError | None: ...


class KafkaConsumer(Protocol):
    """The seam between the loop and librdkafka's consumer: what ``Worker`` and its watchdog
    call, as confluent-kafka types it. ``confluent_kafka.Consumer`` is one; tests plug in an
    in-memory one."""

    def subscribe(
        self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None
    ) -> None: ...
    def poll(self, timeout: float = -1) -> Any: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...
    def assignment(self) -> list[TopicPartition]: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition) -> None: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]: ...
    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]: ...
    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...
    def memberid(self) -> str: ...
    def close(self) -> None: ...


class KafkaProducer(Protocol):
    """The seam between ``deliver`` and librdkafka's producer (``confluent_kafka.Producer`` is one)."""

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None: ...
    def poll(self, timeout: float = -1) -> int: ...
    def flush(self, timeout: float = -1) -> int: ...
    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...


ConsumerFactory = Callable[..., KafkaConsumer]
"""``make_consumer``'s shape: (settings, group id, **extra librdkafka config) → a consumer."""


class ProducerFailed(BrokerUnavailable):
    """The producer is unusable (fatal error, fenced): build a new one, then retry."""


@dataclass(frozen=True)
class Record:
    """A record to produce; ``key`` is the image id (bytes where they must stay as they came)."""

    topic: str
    key: str | bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


class _ToStructlog(logging.Handler):
    """librdkafka's own log (every refused connection, every retry: hundreds of lines while a
    broker is down) as structlog debug lines; what matters reaches darkroom as errors."""

    def __init__(self) -> None:
        super().__init__()
        self.log = structlog.get_logger("darkroom.librdkafka")

    def emit(self, record: logging.LogRecord) -> None:
        self.log.debug(record.getMessage(), librdkafka_level=record.levelname)


_LIBRDKAFKA = logging.getLogger("darkroom.librdkafka")
_LIBRDKAFKA.addHandler(_ToStructlog())
_LIBRDKAFKA.setLevel(logging.DEBUG)
_LIBRDKAFKA.propagate = False


class _ClientErrors:
    """The last error librdkafka reported for a connection (``error_cb``), so that a refused
    password, a certificate that does not verify or a plaintext client at a TLS listener
    is said in one line naming the cause, instead of ending as a timeout that names none."""

    RECENT_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, str]] = {}

    _MISCONFIGURED = re.compile(
        r"certificate|unknown ca|handshake failure|no shared cipher|wrong version number"
        r"|incorrect security\.protocol|PLAINTEXT broker listener|SSL listener",
        re.IGNORECASE,
    )
    """Connection errors no retry fixes: a certificate that does not verify (or is missing),
    a TLS client at a plaintext listener and the reverse (librdkafka names the likely cause)."""

    def seen(self, err: KafkaError) -> None:
        text = err.str()
        if err.code() == KafkaError._AUTHENTICATION:
            kind = "auth"
        elif self._MISCONFIGURED.search(text):
            kind = "tls"
        else:
            kind = "transport"
        with self._lock:
            self._last[kind] = (time.monotonic(), text)

    def _recent(self, kind: str) -> str | None:
        with self._lock:
            found = self._last.get(kind)
        return found[1] if found is not None and time.monotonic() - found[0] < self.RECENT_S else None

    def check(self) -> None:
        """Raise what no retry fixes: refused credentials (``AccessRefused``), a connection
        that cannot be secured as configured (``ConfigurationError``: a wrong CA, a missing
        client certificate, a TLS client at a plaintext listener or the reverse).

        Admin clients report only when polled (consumers and producers do as they work):
        every live one is polled first."""
        for admin in list(_ADMINS):
            admin.poll(0)
        if (auth := self._recent("auth")) is not None:
            raise AccessRefused(f"Kafka refused darkroom's credentials: {_no_location(auth)}")
        if (tls := self._recent("tls")) is not None:
            raise ConfigurationError(f"cannot connect to Kafka securely: {_no_location(tls)}")

    def cause(self) -> str:
        """The last connection error seen, as ``; last error: …`` for a timeout's message, or ""."""
        said = self._recent("transport") or self._recent("tls") or self._recent("auth")
        return f"; last error: {_no_location(said)}" if said else ""


def _no_location(text: str) -> str:
    """librdkafka's ``sasl_ssl://host:port/bootstrap: `` prefix off, and no ``(after …ms in state …)``."""
    text = re.sub(r"^\S+://\S+?/\S+?: ", "", text)
    return re.sub(r" \(after \d+ms in state \w+(, \d+ identical error\(s\) suppressed)?\)$", "", text)


CLIENT_ERRORS = _ClientErrors()
"""This process's clients' connection errors (one librdkafka ``error_cb`` for all)."""


def security_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka settings of ``DARKROOM_KAFKA_SECURITY_PROTOCOL`` and its companions:
    TLS (a CA, a client certificate and key for mTLS), SASL (PLAIN, SCRAM, OAUTHBEARER with
    OIDC client credentials), then whatever ``DARKROOM_KAFKA_PROPERTIES`` adds."""
    s = settings
    conf: dict[str, Any] = {"security.protocol": s.kafka_security_protocol.lower()}
    if s.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        conf["ssl.endpoint.identification.algorithm"] = "https"  # the broker's name must be on its certificate
        files = {
            "ssl.ca.location": s.kafka_ssl_ca,
            "ssl.certificate.location": s.kafka_ssl_certificate,
            "ssl.key.location": s.kafka_ssl_key,
        }
        conf.update({key: str(path) for key, path in files.items() if path is not None})
        if s.kafka_ssl_key_password.get_secret_value():
            conf["ssl.key.password"] = s.kafka_ssl_key_password.get_secret_value()
    if s.kafka_security_protocol.startswith("SASL_"):
        conf["sasl.mechanism"] = s.kafka_sasl_mechanism
        if s.kafka_sasl_mechanism == "OAUTHBEARER":
            conf |= {
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": s.kafka_oauth_token_url,
                "sasl.oauthbearer.client.id": s.kafka_oauth_client_id,
                "sasl.oauthbearer.client.secret": s.kafka_oauth_client_secret.get_secret_value(),
            }
            if s.kafka_oauth_scope:
                conf["sasl.oauthbearer.scope"] = s.kafka_oauth_scope
        else:
            conf["sasl.username"] = s.kafka_sasl_username
            conf["sasl.password"] = s.kafka_sasl_password.get_secret_value()
    if s.kafka_properties is not None:
        conf |= kafka_properties(s.kafka_properties)
    return conf


def client_config(settings: Settings) -> dict[str, Any]:
    """What every Kafka client of darkroom shares: the bootstrap servers, the security
    settings, the log's route and the error route (``_ClientErrors``)."""
    return {
        "bootstrap.servers": settings.bootstrap_servers(),
        **security_config(settings),
        "logger": _LIBRDKAFKA,
        "error_cb": CLIENT_ERRORS.seen,
    }


_ADMINS: weakref.WeakSet[AdminClient] = weakref.WeakSet()
"""The live admin clients, polled by ``CLIENT_ERRORS.check`` for the errors they met."""


def make_admin(settings: Settings) -> AdminClient:
    admin = AdminClient(client_config(settings))
    _ADMINS.add(admin)
    return admin


def make_producer(settings: Settings, delivery_timeout_s: float = 30.0) -> Producer:
    """``delivery_timeout_s``: how long a record may wait for the broker before its delivery fails."""
    return Producer(
        {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "delivery.timeout.ms": int(delivery_timeout_s * 1000),
            "message.max.bytes": settings.max_message_bytes,
        }
    )


def discard_producer(old: KafkaProducer) -> None:
    """Drop a producer whose delivery failed; the caller makes a new one and sends again.

    The old one may be fenced or in a state the broker no longer accepts (seen on the
    embedded broker after its log store froze: every retry of that producer refused, for
    as long as it lived, reported only as timeouts), so it is never retried."""
    with contextlib.suppress(KafkaException, SystemError, RuntimeError):
        old.purge()


def make_consumer(settings: Settings, group_id: str, **extra: object) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
            "max.poll.interval.ms": settings.max_poll_interval_ms,
            # a member joining or leaving moves only the partitions that must move; the
            # others keep being processed through the rebalance
            "partition.assignment.strategy": "cooperative-sticky",
            **extra,
        }
    )


def check_delivery_error(err: KafkaError) -> str | None:
    """Raise for an error the whole batch must react to; return the reason of a refused record."""
    if err.fatal() or err.code() in _FENCED:
        raise ProducerFailed(f"the Kafka producer is unusable: {err.str()}")
    if err.code() in _DENIED:
        raise AccessRefused(f"Kafka refused darkroom's credentials: {err.str()}")
    if err.code() in _PERMANENT:
        return err.str()
    raise BrokerUnavailable(f"Kafka did not acknowledge the output: {err.str()}")


def _report(errors: list[tuple[int, KafkaError]], index: int, err: KafkaError | None, _msg: Message) -> None:
    if err is not None:
        errors.append((index, err))


def _reason(exc: BaseException) -> str:
    cause = exc if isinstance(exc, KafkaException) else exc.__cause__
    if isinstance(cause, KafkaException) and isinstance(cause.args[0], KafkaError):
        return str(cause.args[0].str())
    return f"{type(exc).__name__}: {exc}"


def deliver(producer: KafkaProducer, records: Sequence[Record], timeout_s: float = 60.0) -> dict[int, str]:
    """Produce ``records`` and wait for every delivery report.

    Returns the records the broker refused for good, by index, with the reason. Raises
    ``ProducerFailed`` (rebuild the producer) or ``BrokerUnavailable`` (wait) otherwise.
    """
    refused: dict[int, str] = {}
    errors: list[tuple[int, KafkaError]] = []
    for index, rec in enumerate(records):
        key = rec.key.encode() if isinstance(rec.key, str) else rec.key
        while True:
            try:
                producer.produce(
                    rec.topic,
                    key=key,
                    value=rec.value,
                    headers=list(rec.headers),
                    on_delivery=partial(_report, errors, index),
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain, then go on
                producer.poll(0.5)
            except KafkaException as exc:  # refused before sending (e.g. larger than message.max.bytes)
                reason = check_delivery_error(exc.args[0])
                if reason is not None:
                    refused[index] = reason
                break
    try:
        remaining = producer.flush(timeout_s)
    except (KafkaException, SystemError) as exc:
        # a fatal error is raised out of flush(); confluent-kafka 2.16 may wrap it in a
        # SystemError when it meets the delivery callback
        raise ProducerFailed(f"the Kafka producer is unusable: {_reason(exc)}") from None
    for index, err in errors:
        reason = check_delivery_error(err)
        if reason is not None:
            refused[index] = reason
    if remaining:
        CLIENT_ERRORS.check()
        raise BrokerUnavailable(
            f"Kafka did not acknowledge the output: {remaining} records still queued after {timeout_s}s"
            f"{CLIENT_ERRORS.cause()}"
        )
    return refused
