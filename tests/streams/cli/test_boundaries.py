"""The CLI's doors: webhook targets refused where they enter, secrets never printed,
and ``status --json`` the same on PostgreSQL and SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from processors.errors import ProcessingFailed
from streams.config import Settings
from streams.sinks.database import Database
from streams.sinks.outbox import enqueue
from streams.sinks.results import record_result
from streams.sinks.webhooks.signing import new_secret
from streams.wire import events
from tests.streams.cli.test_cli import assert_one_line_error, darkroom


def _home_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DARKROOM_HOME": str(tmp_path / "home"), "DARKROOM_DATABASE_URL": "", **extra}


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://169.254.169.254/x", "invalid_webhook_url"),
        ("http://user:pw@example.com/hook", "invalid_webhook_url"),
        ("not a url", "invalid_webhook_url"),
        ("http://169.254.169.254/latest/meta-data", "webhook_target_blocked"),
        ("http://10.1.2.3/hook", "webhook_target_blocked"),
        ("http://[::1]:8080/hook", "webhook_target_blocked"),
        ("http://localhost:8080/hook", "webhook_target_blocked"),  # resolved at the door
    ],
)
def test_subscribe_refuses_bad_targets_and_issues_no_secret(tmp_path: Path, url: str, code: str) -> None:
    result = darkroom("webhooks", "subscribe", "--tenant", "acme", "--url", url, env=_home_env(tmp_path))
    assert_one_line_error(result, code, 2)
    assert "whsec_" not in result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "home" / "results.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM webhook_subscriptions").fetchone() == (0,)


@pytest.mark.parametrize("tenant", ["acme corp", "../acme", "-acme", "t" * 65])
def test_subscribe_refuses_a_bad_tenant_and_issues_no_secret(tmp_path: Path, tenant: str) -> None:
    result = darkroom(
        "webhooks", "subscribe", f"--tenant={tenant}", "--url", "https://example.com/h", env=_home_env(tmp_path)
    )
    assert_one_line_error(result, "invalid_tenant", 2)
    assert "whsec_" not in result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "home" / "results.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM webhook_subscriptions").fetchone() == (0,)


def test_submit_refuses_a_bad_tenant_before_touching_storage(tmp_path: Path) -> None:
    """No stack runs here: the tenant is refused before anything is stored or sent."""
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8 not checked before the tenant")
    result = darkroom("submit", str(photo), "--pipeline", "thumbnail", "--tenant", "acme corp", env=_home_env(tmp_path))
    assert_one_line_error(result, "invalid_tenant", 2)


def test_subscribe_accepts_an_allow_listed_private_target(tmp_path: Path) -> None:
    env = _home_env(tmp_path, DARKROOM_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8")
    result = darkroom("webhooks", "subscribe", "--tenant", "acme", "--url", "http://127.0.0.1:9/h", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["secret"].startswith("whsec_")


@pytest.mark.parametrize(
    ("secrets", "code"), [("", "configuration_error"), ("whsec_tooshort", "invalid_webhook_secret")]
)
def test_submit_with_a_callback_needs_valid_signing_secrets(tmp_path: Path, secrets: str, code: str) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8 not checked before the callback")
    env = _home_env(tmp_path, DARKROOM_WEBHOOK_SECRETS=secrets)
    result = darkroom("submit", str(photo), "--pipeline", "thumbnail", "--callback", "https://example.com/h", env=env)
    assert_one_line_error(result, code, 2)
    assert "DARKROOM_WEBHOOK_SECRETS" in result.stderr or "whsec_" in result.stderr
    assert "tooshort" not in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("url", "code"),
    [("ftp://example.com/x", "invalid_webhook_url"), ("http://169.254.169.254/x", "webhook_target_blocked")],
)
def test_submit_refuses_a_bad_callback(settings: Settings, tmp_path: Path, url: str, code: str) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"bytes")
    env = {**settings.to_env(), "DARKROOM_WEBHOOK_SECRETS": new_secret()}
    result = darkroom("submit", str(photo), "--pipeline", "thumbnail", "--callback", url, env=env)
    assert_one_line_error(result, code, 2)


@pytest.mark.parametrize(
    ("database_url", "code"),
    [
        ("mysql://admin:hunter2@db.internal/x", "configuration_error"),
        ("mysql:admin:hunter2@db/x", "configuration_error"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/x?password=hunter2&sslpassword=hunter2", "database_unavailable"),
        ("postgresql://admin:hun%ZZter2@127.0.0.1/x", "configuration_error"),  # libpq quotes the bad token
        ("postgresql://127.0.0.1:1/x?sslmode=hunter2", "database_unavailable"),
    ],
)
def test_a_database_url_is_never_echoed_with_its_password(tmp_path: Path, database_url: str, code: str) -> None:
    result = darkroom("status", "x", env={**_home_env(tmp_path), "DARKROOM_DATABASE_URL": database_url})
    assert_one_line_error(result, code, 2 if code == "configuration_error" else 1)
    assert "hunter2" not in result.stdout + result.stderr


def _types(value: Any, path: str = "") -> dict[str, str]:
    """Every leaf's JSON type by path: what a client in another language would parse."""
    if isinstance(value, dict):
        return {k: t for key, item in value.items() for k, t in _types(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: t for i, item in enumerate(value) for k, t in _types(item, f"{path}[{i}]").items()}
    return {path: type(value).__name__}


@pytest.mark.integration
def test_status_json_has_the_same_types_on_postgresql_and_sqlite(
    settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    upload = {
        "event_id": "up-1",
        "image_id": "img-1",
        "bucket": settings.bucket,
        "key": "uploads/img-1/a.jpg",
        "callback_url": "https://hooks.example.com/cb?token=s3cr3t-token",
        "tenant": "acme",
        "submitted_at": events.now(),
    }
    failure = events.failed(
        upload, ProcessingFailed("thumbnail failed"), upload_event_id="up-1", step_index=0, failed_step="thumbnail"
    )
    docs = {}
    for url in (postgres_url, f"sqlite:///{tmp_path / 'r.sqlite3'}"):
        db = Database(settings.replace(database_url=url))
        db.migrate()
        with db.transaction() as tx:
            record_result(tx, "failed", failure)
            enqueue(tx, "failed", failure)
        db.close()
        result = darkroom("status", "img-1", "--json", env={**settings.to_env(), "DARKROOM_DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        assert "s3cr3t-token" not in result.stdout  # the callback URL is shown masked
        docs[url.split(":")[0]] = json.loads(result.stdout)
    assert docs["postgresql"]["retryable"] is True
    assert _types(docs["postgresql"]) == _types(docs["sqlite"])
    assert docs["sqlite"]["webhooks"][0]["url"] == "https://hooks.example.com/cb?token=***"
