"""A run seeded with known secrets, then every output scanned for them.

The secrets: the database password (in the URL's user info and in ``?password=``), the
object store's secret key, the callback signing secret, tokens in a callback URL and a
subscription URL, and the text of an exception a handler raises. The outputs: the
workers' JSON log, the CLI's stdout and stderr, every event on the result topics, every
database row, and every webhook request (body and headers) a receiver got.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.handlers.steps import worker_specs
from streams.runtime.logs import configure_logging
from streams.runtime.storage import ObjectStore
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import COMPLETED, DEAD_LETTER, FAILED
from streams.runtime.worker import WorkerSpec
from streams.sinks import dispatcher, outbox
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.sinks.webhooks.signing import new_secret
from streams.wire.events import Serdes
from tests.helpers import read_topic
from tests.receiver import Receiver
from tests.streams.cli.test_cli import darkroom

pytestmark = pytest.mark.integration

DB_PASSWORD = "pg-pass-7f3a0c"
CALLBACK_TOKEN = "cb-token-91c2e4"
SUBSCRIPTION_TOKEN = "sub-token-44d1b8"
EXCEPTION_TEXT = "exc-text-5d1e9a"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _poisoned(spec: WorkerSpec) -> WorkerSpec:
    """The thumbnail step, raising for the image called ``poison`` with a secret in its text."""
    assert spec.handle is not None
    handle = spec.handle

    def raising(event: dict[str, Any], log: Any) -> Any:
        if event["image_id"] == "poison":
            raise RuntimeError(f"connection string had {EXCEPTION_TEXT} in it")
        return handle(event, log)

    return dataclasses.replace(spec, handle=raising)


def test_no_secret_reaches_any_output(settings: Settings, postgres_url: str, receiver: Receiver) -> None:
    base, name = postgres_url.rsplit("/", 1)
    signing_secret = new_secret()
    run = settings.replace(
        database_url=f"{base.replace('postgres@', f'postgres:{DB_PASSWORD}@')}/{name}?password={DB_PASSWORD}",
        webhook_secrets=signing_secret,
        webhook_allow_networks="127.0.0.0/8",
        webhook_schedule="0,0.2,0.2",
        poison_attempts=2,
        retry_backoff_s=0.05,
        log_format="json",
    )
    s3_secret = run.s3_credentials()[2]
    db = Database(run)
    db.migrate()
    records = outbox.Outbox(db)
    records.subscribe("acme", f"{receiver.url}/tenant?key={SUBSCRIPTION_TOKEN}", ["image.completed", "image.failed"])

    log = io.StringIO()
    configure_logging(run, stream=log)
    ingest, thumbnail = worker_specs(run, ["ingest", "thumbnail"])
    sink_db, dispatch_db = Database(run), Database(run)
    supervisor = Supervisor(
        run,
        [ingest, _poisoned(thumbnail), results_spec(run, Serdes(run), sink_db, outbox.enqueue)],
        [dispatcher.Dispatcher(run, dispatch_db)],
        resources=[sink_db, dispatch_db],
    )
    supervisor.start()
    try:
        with Client(run, ObjectStore(run)) as client:
            subs = [
                client.submit(
                    photo_jpeg(320, 240, seed=i),
                    f"{image_id}.jpg",
                    "thumbnail:sizes=64",
                    image_id=image_id,
                    callback_url=f"{receiver.url}/cb?token={CALLBACK_TOKEN}",
                    tenant="acme",
                )
                for i, image_id in enumerate(["good", "poison"])
            ]
            finals = client.wait(subs, timeout_s=120)
        assert {i: f.status for i, f in finals.items()} == {"good": "completed", "poison": "failed"}
        deadline = time.monotonic() + 60
        while len(records.deliveries(status="delivered")) < 4:
            assert time.monotonic() < deadline, records.deliveries()
            time.sleep(0.2)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
        structlog.reset_defaults()

    env = {**run.to_env(), "DARKROOM_LOG_FORMAT": "json"}
    cli = [darkroom(*args, env=env) for args in (["status", "good"], ["status", "poison", "--json"])]
    cli += [darkroom("webhooks", "list", *flag, env=env) for flag in ([], ["--json"])]
    assert all(r.returncode == 0 for r in cli), [r.stderr for r in cli]
    cli_output = "\n".join(r.stdout + r.stderr for r in cli)
    topics = b"\n".join(
        r.value + repr(r.headers).encode()
        for t in (COMPLETED, FAILED, DEAD_LETTER)
        for r in read_topic(run, run.topic(t), idle_s=1.0)
    ).decode("utf-8", "replace")
    with db.transaction() as tx:
        results = tx.query("SELECT * FROM results")
        deliveries = tx.query("SELECT * FROM webhook_deliveries")
        subscriptions = tx.query("SELECT * FROM webhook_subscriptions")
    # The targets' own URLs are where deliveries go, so their rows keep them; nothing else may.
    rows = json.dumps([results, [{k: v for k, v in d.items() if k != "url"} for d in deliveries]], default=str)
    rows += json.dumps([{k: v for k, v in s.items() if k not in {"url", "secret"}} for s in subscriptions])
    # headers and bodies: what darkroom chose to send (the path is the receiver's own URL)
    webhooks = "\n".join(f"{r.headers}\n{r.body.decode()}" for r in receiver.requests)
    worker_log = log.getvalue()
    db.close()

    assert len(receiver.requests) == 4 and "poison" in worker_log and results
    everywhere = {"log": worker_log, "cli": cli_output, "topics": topics, "rows": rows, "webhooks": webhooks}
    for secret in (DB_PASSWORD, s3_secret, signing_secret, signing_secret.removeprefix("whsec_")):
        assert [where for where, text in everywhere.items() if secret in text] == []
    for token in (CALLBACK_TOKEN, SUBSCRIPTION_TOKEN):  # events carry the callback (it is the target)
        assert [where for where, text in everywhere.items() if where != "topics" and token in text] == []
    # The exception's text stays in the worker's log, where an operator needs it, and only there.
    assert EXCEPTION_TEXT in worker_log
    assert [where for where, text in everywhere.items() if where != "log" and EXCEPTION_TEXT in text] == []
    assert_documented_log_fields(worker_log)


def assert_documented_log_fields(worker_log: str) -> None:
    """The README's Logs section, line by line: worker and group on every line of a worker;
    topic, partition, offset and event id on every line about a record."""
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    worker_lines = [line for line in lines if "worker" in line]  # the dispatcher's lines are about deliveries
    assert {line["worker"] for line in worker_lines} == {"ingest", "thumbnail", "results"}
    assert [line for line in worker_lines if "group" not in line] == []
    about_a_record = [line for line in worker_lines if "image_id" in line]
    assert {line["worker"] for line in about_a_record} == {"ingest", "thumbnail", "results"}
    missing = [line for line in about_a_record if not {"topic", "partition", "offset", "event_id"} <= line.keys()]
    assert missing == []


KAFKA_SECRETS = {
    "DARKROOM_KAFKA_SASL_PASSWORD": "sasl-pw-0b7e21",
    "DARKROOM_KAFKA_SSL_KEY_PASSWORD": "key-pw-c3a9f0",
    "DARKROOM_KAFKA_OAUTH_CLIENT_SECRET": "oauth-secret-6e12d4",
    "DARKROOM_SCHEMA_REGISTRY_PASSWORD": "registry-pw-8d0f5b",
}


def test_the_kafka_and_registry_secrets_reach_no_output_nor_error(settings: Settings) -> None:
    """The security settings' secrets in every place a setting can surface: the settings'
    repr, a configuration error listing every bad value, and a command's one error line
    when the broker cannot be reached with them (here: nothing listens)."""
    env = {
        **settings.to_env(),
        **KAFKA_SECRETS,
        "DARKROOM_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "DARKROOM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DARKROOM_KAFKA_SASL_USERNAME": "darkroom",
        "DARKROOM_CLIENT_TIMEOUT_S": "2",
    }
    from streams.config import load_settings

    loaded = load_settings(env)
    bad = {**env, "DARKROOM_PARTITIONS": "many", "DARKROOM_KAFKA_SECURITY_PROTOCOL": "TLS"}
    outputs = [repr(loaded), str(loaded)]
    with pytest.raises(Exception) as refused:
        load_settings(bad)
    outputs.append(str(refused.value))
    for args in (("groups", "list"), ("replay", "--since", "1h", "--dry-run")):
        result = darkroom(*args, env=env)
        assert result.returncode != 0
        outputs += [result.stdout, result.stderr]
    for secret in KAFKA_SECRETS.values():
        assert [text for text in outputs if secret in text] == []
