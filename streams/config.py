"""The one configuration object, read from ``DARKROOM_*`` environment variables.

Everything external (Kafka, S3, schema registry) is optional: when it is not set, the
embedded stack (``darkroom stack up``) is used and its generated credentials are read
from the data directory. ``load_settings`` collects *all* problems before failing, so an
operator fixes the environment in one go.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from processors.errors import ConfigurationError
from processors.operation import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    Limits,
)

PREFIX = "DARKROOM_"
BROKER_BUCKET_SUFFIX = "-broker-log"
"""The embedded broker keeps its log in ``<bucket>-broker-log``."""


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "darkroom"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All of darkroom's settings; field ``foo_bar`` is read from ``DARKROOM_FOO_BAR``.

    Empty strings mean "not given": for the Kafka / S3 endpoints that selects the
    embedded stack.
    """

    home: Path = field(default_factory=_default_home)
    kafka_bootstrap: str = ""
    schema_registry_url: str = ""
    s3_endpoint: str = ""
    database_url: str = field(default="", repr=False)
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    bucket: str = "darkroom"
    # Buckets an upload may name (comma-separated); empty means ``bucket`` alone. The
    # embedded broker's log bucket is darkroom's own and is never allowed.
    allowed_buckets: str = ""
    output_prefix: str = "derived"
    topic_prefix: str = ""
    # Partitions of the topics darkroom creates. A consumer group scales to as many members
    # as partitions, and the embedded broker cannot add partitions later.
    partitions: int = 12
    replication_factor: int = 1
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 300_000
    batch_size: int = 8
    max_message_bytes: int = 4 * 1024 * 1024
    # How long the CLI and the Python client wait for the broker to acknowledge a record
    # before saying broker_unavailable (workers wait out outages instead).
    client_timeout_s: float = 10.0
    storage_attempts: int = 5
    storage_backoff_s: float = 0.5
    # Outages (streams/runtime/worker.py): a worker whose dependency is down pauses and
    # waits, backing off from retry_backoff_s to retry_max_backoff_s; a record that waited
    # retry_timeout_s in all is failed with the outage's retryable code (0: at once).
    retry_timeout_s: float = 86_400.0
    retry_backoff_s: float = 1.0
    retry_max_backoff_s: float = 30.0
    poison_attempts: int = 3
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = DEFAULT_MAX_FRAMES
    log_format: str = "auto"
    # Operations (README, *Operating*): /metrics, /healthz and /readyz on metrics_port (0: off).
    # A worker with lag and no progress for stuck_after_s is unhealthy.
    metrics_port: int = 0
    stuck_after_s: float = 600.0
    # Worker processes per service for `darkroom run`, e.g. "thumbnail=4,upscale=1"; services
    # not named get one (thumbnail and enhance: one per CPU).
    processes: str = ""
    # Ingress without producer code (README, *Notifications* and *HTTP API*). The topic MinIO's
    # notify_kafka target writes to (empty: no notifications worker) and the rules that turn
    # its records into uploads (a JSON file path, or inline JSON).
    notifications_topic: str = ""
    notification_rules: str = field(default="", repr=False)  # inline rules may hold callback tokens
    # The HTTP API (`darkroom api`; started by `darkroom run` when api_port is set).
    api_port: int = 0
    api_rate_per_minute: int = 600
    api_upload_url_ttl_s: int = 900
    # A service that cannot reach the broker or database at start waits for them (0), or
    # gives up after this many seconds with one error line and exit 1.
    start_timeout_s: float = 0.0
    # Static group membership: members named "<instance_id>.<service>" ("<instance_id>.<n>.<service>"
    # for the children of `run --processes`), so a restarted one takes its partitions back
    # without a rebalance. Empty: dynamic membership.
    instance_id: str = ""
    log_level: str = "info"
    # Webhooks (streams/sinks/webhooks.py). The schedule is the delay in seconds before each
    # attempt, Standard Webhooks / Svix style; its length is the number of attempts.
    webhook_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_timeout_s: float = 15.0
    webhook_max_in_flight_per_host: int = 4
    webhook_lease_s: float = 35.0  # a claimed delivery is due again if its dispatcher stops renewing it
    webhook_allow_networks: str = ""
    webhook_secrets: str = field(default="", repr=False)
    # Ports of the embedded stack (loopback only). Every HTTP port of SeaweedFS also
    # opens port+10000 for gRPC, so keep these 10000 apart from anything else.
    kafka_port: int = 19092
    s3_port: int = 18333
    weed_master_port: int = 19333
    weed_volume_port: int = 18080
    weed_filer_port: int = 18888
    weed_admin_port: int = 19646

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def embedded_s3(self) -> bool:
        return not self.s3_endpoint

    @property
    def internal_buckets(self) -> frozenset[str]:
        """Buckets darkroom keeps for itself (the embedded broker's log): never read or written for an upload."""
        return frozenset({self.bucket + BROKER_BUCKET_SUFFIX})

    @property
    def buckets_named(self) -> frozenset[str]:
        """``allowed_buckets`` as given, or ``bucket`` alone."""
        return frozenset({b.strip() for b in self.allowed_buckets.split(",") if b.strip()} or {self.bucket})

    @property
    def buckets_allowed(self) -> frozenset[str]:
        """The buckets uploads may name: ``buckets_named`` less the internal ones (``load_settings`` refuses those)."""
        return self.buckets_named - self.internal_buckets

    @property
    def limits(self) -> Limits:
        return Limits(
            max_file_bytes=self.max_file_bytes,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
        )

    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def s3_credentials(self) -> tuple[str, str, str, bool]:
        """(endpoint, access key, secret key, secure) — the embedded stack's when not set."""
        if not self.embedded_s3:
            return self.s3_endpoint, self.s3_access_key, self.s3_secret_key, self.s3_secure
        creds_file = self.home / "s3-credentials.json"
        try:
            creds = json.loads(creds_file.read_text())
        except FileNotFoundError:
            raise ConfigurationError(
                f"no S3 endpoint configured and no embedded stack in {self.home}: "
                "run `darkroom stack up` or set DARKROOM_S3_ENDPOINT"
            ) from None
        return f"127.0.0.1:{self.s3_port}", creds["access_key"], creds["secret_key"], False

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``DARKROOM_*`` variables, e.g. for a worker subprocess."""
        return {
            PREFIX + f.name.upper(): str(getattr(self, f.name)).lower()
            if isinstance(getattr(self, f.name), bool)
            else str(getattr(self, f.name))
            for f in fields(self)
        }


def mask_url(url: str) -> str:
    """``url`` fit for logs, messages and CLI output: user info and query values masked.

    What does not parse as ``scheme://host[:port]…`` shows only its scheme, since anything
    after it may be a password (``mysql:admin:hunter2@…``, ``db://user:pw/x``).
    """
    scheme, _, rest = url.partition(":")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises for a non-numeric port, which may be a password
    except ValueError:
        parts = None
    if parts is None or not rest.startswith("//") or not _SCHEME.fullmatch(scheme):
        return f"{scheme}:***" if _SCHEME.fullmatch(scheme) else "***"
    _, at, host = parts.netloc.rpartition("@")
    pairs = (item.partition("=") for item in parts.query.split("&") if item)
    query = "&".join(f"{key}=***" if sep else "***" for key, sep, _ in pairs)  # a bare ?token too
    return f"{parts.scheme}://{'***@' if at else ''}{host}{parts.path}" + (f"?{query}" if query else "")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": _parse_bool,
    "str": str,
    "Path": lambda raw: Path(raw).expanduser(),
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build ``Settings`` from the environment; raise one error listing every bad value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        name = PREFIX + f.name.upper()
        if name not in env:
            continue
        try:
            values[f.name] = _PARSERS[str(f.type)](env[name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k[len(PREFIX) :].lower() not in _FIELD_NAMES)
    problems.extend(f"{k}: unknown setting" for k in unknown)
    values.update(overrides)
    if values.get("log_format", "auto") not in {"auto", "json", "console"}:
        problems.append(f"{PREFIX}LOG_FORMAT: expected auto, json or console")
    if problems:
        raise ConfigurationError("invalid configuration: " + "; ".join(problems))
    settings = Settings(**values)
    internal = sorted(settings.buckets_named & settings.internal_buckets)
    if internal:
        raise ConfigurationError(
            f"invalid configuration: {PREFIX}ALLOWED_BUCKETS: {', '.join(internal)} is darkroom's own"
            " and cannot be allowed"
        )
    return settings


_FIELD_NAMES = frozenset(f.name for f in fields(Settings))
