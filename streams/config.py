"""The one configuration object: every ``DARKROOM_*`` variable is read, parsed and checked here.

``Settings`` is a pydantic-settings model. Each field ``foo_bar`` is read from
``DARKROOM_FOO_BAR``; structured values arrive as the strings an operator writes
(``"0,5,300"``, ``"thumbnail=4,upscale=1"``, a JSON list or the path of a file holding
it) and leave as typed values; ranges are checked; secrets are ``SecretStr`` (never in a
repr, an error or a log). ``load_settings`` reports every problem at once, unknown
``DARKROOM_*`` variables included, in one ``ConfigurationError`` that never quotes a
value. Defaults are written here and nowhere else.

Everything external (Kafka, S3, schema registry) is optional: when it is not set, the
embedded stack (``darkroom stack up``) is used and its generated credentials are read
from the data directory.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from processors import KNOWN_OPERATIONS
from processors.errors import ConfigurationError
from processors.operation import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, Limits
from processors.upscale.config import UpscaleConfig
from streams.errors import InvalidWebhookSecret

PREFIX = "DARKROOM_"
BROKER_BUCKET_SUFFIX = "-broker-log"
"""The embedded broker keeps its log in ``<bucket>-broker-log``."""
SERVICE_NAMES = ("ingest", *KNOWN_OPERATIONS, "results", "webhooks", "notifications")
"""What ``darkroom worker NAME`` runs, and what ``DARKROOM_PROCESSES`` may name."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_UPSCALE = UpscaleConfig(model_dir=Path())
"""The upscaler's own defaults (``processors`` never imports ``streams``): read, not rewritten."""
_SECRET_PREFIX = "whsec_"


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "darkroom"


def _items(raw: Any) -> Any:
    """A comma- or space-separated string as its items; anything else as given."""
    return [item for item in re.split(r"[,\s]+", raw.strip()) if item] if isinstance(raw, str) else raw


def parse_process_counts(raw: Any) -> dict[str, int]:
    """``"thumbnail=4,upscale=1"`` → counts per service (0 runs none); names from ``SERVICE_NAMES``."""
    if not isinstance(raw, str):
        return dict(raw)
    counts: dict[str, int] = {}
    for item in _items(raw):
        name, sep, count = item.partition("=")
        if not sep or name not in SERVICE_NAMES or not re.fullmatch(r"[0-9]{1,4}", count):
            raise ValueError(f"expected NAME=COUNT,… with NAME one of {', '.join(SERVICE_NAMES)}")
        counts[name] = int(count)
    return counts


class NotificationRule(BaseModel):
    """One rule of ``DARKROOM_NOTIFICATION_RULES``: which stored objects become uploads.

    Its shape is checked here; what it means (an allowed bucket, a valid pipeline or
    preset, an admissible callback) by ``streams.notifications.rules`` when the worker
    starts, against the rest of darkroom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1)
    prefix: str = ""
    suffix: str = ""
    pipeline: str | None = None
    preset: str | None = None
    tenant: str | None = None
    callback_url: SecretStr | None = None  # may carry a token


def _rules(raw: Any) -> Any:
    """Inline JSON (starting with ``[``), else the path of a file holding it; empty: none."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not text:
        return ()
    if not text.startswith("["):
        try:
            text = Path(text).expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {text}: {exc.__class__.__name__}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, list) or not doc:
        raise ValueError("expected a non-empty JSON list of rules")
    return doc


def webhook_secret_key(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret (Standard Webhooks: base64 of 24 to 64 random bytes);
    ``ValueError`` for anything else. The one check, for settings and stored subscriptions alike."""
    body = secret[len(_SECRET_PREFIX) :] if secret.startswith(_SECRET_PREFIX) else ""
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True) if body else b""
    except (binascii.Error, ValueError):
        key = b""
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret must be 'whsec_' followed by base64 of 24 to 64 bytes")
    return key


def parse_networks(raw: Any) -> tuple[IPNetwork, ...]:
    """``"127.0.0.1/32,::1/128"`` → networks; a bare address means just that address."""
    items = _items(raw)
    networks: list[IPNetwork] = []
    bad: list[str] = []
    for item in items:
        if not isinstance(item, str):
            networks.append(item)
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            bad.append(item)
    if bad:
        raise ValueError(f"not IP networks: {', '.join(bad)}")
    return tuple(networks)


OWN_KAFKA_SETTINGS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "group.instance.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "enable.idempotence",
        "acks",
        "transactional.id",
    }
)
"""librdkafka settings darkroom's delivery guarantee rests on: a properties file may not change them."""


def kafka_properties(path: Path) -> dict[str, str]:
    """A properties file's ``key=value`` lines (``#``/``!`` comments and blank lines skipped);
    ``ValueError`` naming the first line that is neither, or a key darkroom sets itself.
    Values may be secrets: they are never quoted."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text[0] in "#!":
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"line {number} is not key=value")
        if key.strip() in OWN_KAFKA_SETTINGS:
            raise ValueError(f"line {number}: {key.strip()} is darkroom's own (its delivery guarantee rests on it)")
        found[key.strip()] = value.strip()
    return found


def parse_schedule(raw: Any) -> tuple[float, ...]:
    """``"0,5,300"`` → delays in seconds before attempt 1, 2, 3; non-empty, none negative."""
    try:
        delays = tuple(float(item) for item in _items(raw))
    except ValueError:
        raise ValueError("expected comma-separated seconds") from None
    if not delays or any(d < 0 or d != d for d in delays):
        raise ValueError("expected one or more non-negative delays")
    return delays


_FILES = (
    "kafka_ssl_ca",
    "kafka_ssl_certificate",
    "kafka_ssl_key",
    "kafka_properties",
    "schema_registry_ca",
    "s3_ca_bundle",
)
"""Settings that name a file (PEM bundles, keys, a properties file): checked to exist at load."""

CommaList = Annotated[tuple[str, ...], NoDecode]
Seconds = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("darkroom_environ", default=None)


class _Environ(EnvSettingsSource):
    """The environment ``load_settings`` was given (``os.environ`` by default)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        env = os.environ if given is None else given
        return {key.lower(): value for key, value in env.items()}


class Settings(BaseSettings):
    """All of darkroom's settings; field ``foo_bar`` is read from ``DARKROOM_FOO_BAR``.

    Empty strings mean "not given": for the Kafka / S3 endpoints that selects the
    embedded stack. Immutable: ``replace`` makes a checked copy.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        validate_default=True,
    )

    home: Path = Field(default_factory=_default_home)
    """Embedded stack data, generated S3 credentials, logs, models."""
    # -- Kafka ------------------------------------------------------------------------
    kafka_bootstrap: str = ""
    schema_registry_url: str = ""
    schema_registry_username: str = ""
    schema_registry_password: SecretStr = SecretStr("")
    schema_registry_ca: Path | None = None
    topic_prefix: str = ""
    partitions: int = Field(12, ge=1)
    """Partitions of the topics darkroom creates. A consumer group scales to as many members
    as partitions, and the embedded broker cannot add partitions later."""
    replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = Field(10_000, ge=1000)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    batch_size: int = Field(8, ge=1)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    client_timeout_s: float = Field(10.0, gt=0)
    """How long the CLI and the Python client wait for the broker to acknowledge a record
    before saying broker_unavailable (workers wait out outages instead)."""
    instance_id: str = ""
    """Static group membership: members named "<instance_id>.<service>"
    ("<instance_id>.<n>.<service>" for the children of `run --processes`), so a restarted
    one takes its partitions back without a rebalance. Empty: dynamic membership."""
    # -- Kafka security: every client darkroom makes (streams/runtime/kafka.client_config) --
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_oauth_token_url: str = ""
    """OAUTHBEARER with OIDC client credentials: the identity provider's token endpoint."""
    kafka_oauth_client_id: str = ""
    kafka_oauth_client_secret: SecretStr = SecretStr("")
    kafka_oauth_scope: str = ""
    kafka_ssl_ca: Path | None = None
    """CA bundle (PEM) the broker's certificate must chain to; none: the system's."""
    kafka_ssl_certificate: Path | None = None
    """Client certificate (PEM) for mutual TLS, with ``kafka_ssl_key``."""
    kafka_ssl_key: Path | None = None
    kafka_ssl_key_password: SecretStr = SecretStr("")
    kafka_properties: Path | None = None
    """A file of further librdkafka settings, ``key=value`` per line (Kafka tools' --command-config)."""
    # -- object storage -----------------------------------------------------------------
    s3_endpoint: str = ""
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    s3_ca_bundle: Path | None = None
    """CA bundle (PEM) for an S3 endpoint with a private CA (with ``s3_secure``)."""
    bucket: str = Field("darkroom", min_length=3, max_length=63)
    allowed_buckets: CommaList = ()
    """Buckets an upload may name; empty means ``bucket`` alone. The embedded broker's log
    bucket is darkroom's own and is never allowed."""
    output_prefix: str = "derived"
    storage_attempts: int = Field(5, ge=1)
    storage_backoff_s: Seconds = 0.5
    # -- the result store ---------------------------------------------------------------
    database_url: SecretStr = SecretStr("")
    # -- the worker loop (streams/runtime/worker.py) ------------------------------------
    retry_timeout_s: Seconds = 86_400.0
    """A worker whose dependency is down pauses and waits, backing off from retry_backoff_s
    to retry_max_backoff_s; a record that waited retry_timeout_s in all is failed with the
    outage's retryable code (0: at once)."""
    retry_backoff_s: float = Field(1.0, gt=0)
    retry_max_backoff_s: float = Field(30.0, gt=0)
    poison_attempts: int = Field(3, ge=1)
    stuck_after_s: float = Field(600.0, gt=0)
    """A worker with lag and no progress this long is unhealthy; one free to work that
    committed nothing this long asks the broker whether it is stalled (watchdog)."""
    start_timeout_s: Seconds = 0.0
    """A service that cannot reach the broker or database at start waits for them (0), or
    gives up after this many seconds with one error line and exit 1."""
    processes: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    """Worker processes per service for `darkroom run`; services not named get their default."""
    # -- limits of inputs ---------------------------------------------------------------
    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_frames: int = Field(DEFAULT_MAX_FRAMES, ge=1)
    # -- upscale (processors/upscale/config.py) -----------------------------------------
    upscale_memory_budget_bytes: int = Field(_UPSCALE.memory_budget_bytes, ge=64 * 2**20)
    upscale_max_output_pixels: int = Field(_UPSCALE.max_output_pixels, ge=1)
    upscale_speed_budget_s: float = Field(_UPSCALE.speed_budget_s, gt=0)
    upscale_allow_fallback: bool = _UPSCALE.allow_fallback
    upscale_device: Literal["auto", "cpu", "cuda"] = _UPSCALE.device
    upscale_cpu_bf16: bool = _UPSCALE.cpu_bf16
    # -- logs and operations ------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    metrics_port: Port = 0
    """/metrics, /healthz and /readyz (0: off)."""
    metrics_host: str = "127.0.0.1"
    """The address /metrics listens on: loopback on a workstation; a pod sets 0.0.0.0."""
    # -- ingress without producer code ----------------------------------------------------
    notifications_topic: str = ""
    """The topic MinIO's notify_kafka target writes to (empty: no notifications worker)."""
    notification_rules: Annotated[tuple[NotificationRule, ...], NoDecode] = ()
    api_port: Port = 0
    api_host: str = "127.0.0.1"
    """The address the HTTP API listens on: loopback on a workstation; a pod sets 0.0.0.0."""
    api_public_url: str = ""
    """The API's own base URL as clients reach it (links in answers); empty: links are relative."""
    api_rate_per_minute: int = Field(600, ge=0)
    api_upload_url_ttl_s: int = Field(900, ge=1, le=7 * 86_400)
    # -- webhooks (streams/sinks/webhooks) ------------------------------------------------
    webhook_schedule: Annotated[tuple[Seconds, ...], NoDecode, Field(min_length=1)] = (
        0.0,
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        36000.0,
    )
    """The delay before each attempt, Standard Webhooks / Svix style (immediately, 5 s, 5 min,
    30 min, 2 h, 5 h, 10 h, 10 h); its length is the number of attempts."""
    webhook_timeout_s: float = Field(15.0, gt=0)
    webhook_max_in_flight_per_host: int = Field(4, ge=1)
    webhook_lease_s: float = Field(35.0, gt=0)
    """A claimed delivery is due again if its dispatcher stops renewing it this long."""
    webhook_allow_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # -- ports of the embedded stack (loopback only) -------------------------------------
    # Every HTTP port of SeaweedFS also opens port+10000 for gRPC.
    kafka_port: Port = 19092
    s3_port: Port = 18333
    weed_master_port: Port = 19333
    weed_volume_port: Port = 18080
    weed_filer_port: Port = 18888
    weed_admin_port: Port = 19646

    def __init__(self, **values: Any) -> None:
        """Read and check the settings; every problem at once as one ``ConfigurationError``."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _refused(exc) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment; no .env files, no secrets directory."""
        return init_settings, _Environ(settings_cls)

    # -- parsing --------------------------------------------------------------------------
    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator(*_FILES, mode="before")
    @classmethod
    def _none_if_empty(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("output_prefix", mode="after")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        """Outputs are trusted only under ``<prefix>/<image id>/`` as written: no segment
        may be empty (a leading, trailing or doubled ``/``) or ``.``/``..``."""
        if any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError("must be segments like 'derived' or 'images/derived': no leading, trailing or doubled '/'")
        return value

    @field_validator("allowed_buckets", "webhook_secrets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _items(value)

    @field_validator("webhook_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return parse_schedule(value)

    @field_validator("webhook_allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        return parse_networks(value)

    @field_validator("webhook_secrets", mode="after")
    @classmethod
    def _secrets(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in value:
            webhook_secret_key(secret.get_secret_value())
        return value

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        return parse_process_counts(value)

    @field_validator("notification_rules", mode="before")
    @classmethod
    def _notification_rules(cls, value: Any) -> Any:
        return _rules(value)

    @field_validator(*_FILES)
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        """Given files must exist; an empty value means none."""
        if value is not None and not value.expanduser().is_file():
            raise ValueError("no such file")
        return value.expanduser() if value is not None else None

    @field_validator("kafka_properties")
    @classmethod
    def _properties(cls, value: Path | None) -> Path | None:
        if value is not None:
            kafka_properties(value)
        return value

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Self:
        if not self.kafka_security_protocol.startswith("SASL_"):
            return self
        if self.kafka_sasl_mechanism == "OAUTHBEARER":
            if not (self.kafka_oauth_token_url and self.kafka_oauth_client_id):
                raise ValueError(
                    f"{PREFIX}KAFKA_SASL_MECHANISM=OAUTHBEARER needs {PREFIX}KAFKA_OAUTH_TOKEN_URL and"
                    f" {PREFIX}KAFKA_OAUTH_CLIENT_ID (and its secret)"
                )
        elif not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(f"SASL needs {PREFIX}KAFKA_SASL_USERNAME and {PREFIX}KAFKA_SASL_PASSWORD")
        return self

    @model_validator(mode="after")
    def _own_buckets_are_never_allowed(self) -> Self:
        internal = sorted(self.buckets_named & self.internal_buckets)
        if internal:
            raise ValueError(f"{PREFIX}ALLOWED_BUCKETS: {', '.join(internal)} is darkroom's own and cannot be allowed")
        return self

    # -- what the settings mean -------------------------------------------------------
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
        return frozenset(self.allowed_buckets or {self.bucket})

    @property
    def buckets_allowed(self) -> frozenset[str]:
        """The buckets uploads may name: ``buckets_named`` less the internal ones (refused anyway)."""
        return self.buckets_named - self.internal_buckets

    @property
    def limits(self) -> Limits:
        return Limits(max_file_bytes=self.max_file_bytes, max_pixels=self.max_pixels, max_frames=self.max_frames)

    def upscale(self) -> UpscaleConfig:
        """The upscaler's configuration; its weights live in ``home/models``."""
        return UpscaleConfig(
            model_dir=self.home / "models",
            memory_budget_bytes=self.upscale_memory_budget_bytes,
            max_output_pixels=self.upscale_max_output_pixels,
            speed_budget_s=self.upscale_speed_budget_s,
            allow_fallback=self.upscale_allow_fallback,
            device=self.upscale_device,
            cpu_bf16=self.upscale_cpu_bf16,
        )

    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def s3_credentials(self) -> tuple[str, str, str, bool]:
        """(endpoint, access key, secret key, secure) — the embedded stack's when not set."""
        if not self.embedded_s3:
            return (
                self.s3_endpoint,
                self.s3_access_key.get_secret_value(),
                self.s3_secret_key.get_secret_value(),
                self.s3_secure,
            )
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

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, checked as ``load_settings`` checks (``ConfigurationError``)."""
        try:
            return type(self).model_validate({**dict(self), **changes})
        except ValidationError as exc:
            raise _refused(exc) from None

    def to_env(self) -> dict[str, str]:
        """These settings as ``DARKROOM_*`` variables, e.g. for a worker subprocess; secrets included."""
        return {PREFIX + name.upper(): _env_value(getattr(self, name)) for name in type(self).model_fields}


def _env_value(value: Any) -> str:
    """A setting's value as ``load_settings`` reads it back."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ",".join(f"{name}={count}" for name, count in value.items())
    if isinstance(value, tuple):
        if value and isinstance(value[0], NotificationRule):
            return json.dumps(
                [
                    {
                        **rule.model_dump(exclude_none=True, exclude={"callback_url"}),
                        **({"callback_url": rule.callback_url.get_secret_value()} if rule.callback_url else {}),
                    }
                    for rule in value
                ]
            )
        return ",".join(_env_value(item) for item in value)
    return str(value)


_RULE_PROBLEMS = {
    "extra_forbidden": "unknown key {key!r}",
    "missing": "{key} is required",
    "string_too_short": "{key} is required",
    "string_type": "{key} must be a string",
    "model_type": "expected a JSON object",
}
"""How a problem of one notification rule is said (the rule's own words, never its values)."""


def _problem(error: Mapping[str, Any]) -> str:
    """``DARKROOM_FIELD: what is wrong`` for one pydantic error, without the value given
    (``hide_input_in_errors``: a value may be a secret)."""
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return f"configuration: {message}"
    name = PREFIX + loc[0].upper()
    if loc[0] == "notification_rules" and len(loc) > 1 and loc[1].isdigit():
        said = _RULE_PROBLEMS.get(str(error.get("type")), "{key}: " + message)
        return f"{name}: rule {int(loc[1]) + 1}: " + said.format(key=loc[2] if len(loc) > 2 else "rule")
    if error.get("type") == "extra_forbidden":
        return f"{name}: unknown setting"
    return f"{name}{''.join(f'[{part}]' for part in loc[1:])}: {message}"


def _refused(exc: ValidationError) -> ConfigurationError:
    """One error for every problem; ``InvalidWebhookSecret`` (its own stable code) when the
    signing secrets are all that is wrong."""
    errors = exc.errors(include_input=False, include_url=False)
    message = "invalid configuration: " + "; ".join(_problem(e) for e in errors)
    if all((e.get("loc") or ("",))[0] == "webhook_secrets" for e in errors):
        return InvalidWebhookSecret(message)
    return ConfigurationError(message)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build ``Settings`` from the environment (``os.environ`` unless given) and ``overrides``;
    raise one ``ConfigurationError`` listing every bad value and every unknown variable."""
    env = os.environ if environ is None else environ
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
    token = _ENVIRON.set(env)
    try:
        try:
            settings = Settings(**overrides)
        except ConfigurationError as exc:
            if unknown:
                raise ConfigurationError(
                    exc.message + "; " + "; ".join(f"{k}: unknown setting" for k in unknown)
                ) from None
            raise
    finally:
        _ENVIRON.reset(token)
    if unknown:
        raise ConfigurationError("invalid configuration: " + "; ".join(f"{k}: unknown setting" for k in unknown))
    return settings


def mask_url(url: str) -> str:
    """``url`` fit for logs, messages and CLI output: user info and query values masked.

    What does not parse as ``scheme://host[:port]…`` shows only its scheme, since anything
    after it may be a password (``mysql:admin:hunter2@…``, ``db://user:pw/x``). So does a
    URL with an ``@`` after its host: a password holding ``/``, ``?`` or ``#`` unencoded
    (``db://user:12/34@host``) ends the host early for ``urlsplit``, but not for every
    client, and the host ``urlsplit`` sees would be part of the password.
    """
    scheme, _, rest = url.partition(":")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises for a non-numeric port, which may be a password
    except ValueError:
        parts = None
    if (
        parts is None
        or not rest.startswith("//")
        or not _SCHEME.fullmatch(scheme)
        or "@" in parts.path + parts.query + parts.fragment
    ):
        return f"{scheme}:***" if _SCHEME.fullmatch(scheme) else "***"
    _, at, host = parts.netloc.rpartition("@")
    pairs = (item.partition("=") for item in parts.query.split("&") if item)
    # a bare ?token too, and one ending in base64's padding (?dG9rZW4=), which reads as a key
    query = "&".join(f"{key}=***" if sep and value.strip("=") else "***" for key, sep, value in pairs)
    return f"{parts.scheme}://{'***@' if at else ''}{host}{parts.path}" + (f"?{query}" if query else "")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
