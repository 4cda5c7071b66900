"""``darkroom apikeys`` and ``darkroom api`` / ``darkroom run`` with DARKROOM_API_PORT, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from streams.config import Settings
from tests.streams.cli.test_cli import assert_one_line_error, darkroom


def _env(tmp_path: Path) -> dict[str, str]:
    return {"DARKROOM_HOME": str(tmp_path), "DARKROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite3'}"}


def test_apikeys_are_shown_once_listed_without_the_secret_and_revoked(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert darkroom("apikeys", "list", env=env).stdout == ""  # read-only: creates no database
    assert not (tmp_path / "r.sqlite3").exists()
    created = darkroom("apikeys", "create", "--tenant", "acme", "--json", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["tenant"] == "acme" and key["token"].startswith("drk_") and len(key["token"]) == 47
    listed = darkroom("apikeys", "list", "--json", env=env)
    assert key["token"] not in listed.stdout and key["token"][4:] not in (tmp_path / "r.sqlite3").read_text("latin-1")
    (row,) = json.loads(listed.stdout)["keys"]
    assert row["id"] == key["id"] and row["active"] is True and row["hint"] == key["token"][:8] + "…"
    assert_one_line_error(
        darkroom("apikeys", "revoke", key["id"], "--tenant", "other", env=env), "invalid_parameters", 2
    )
    revoked = darkroom("apikeys", "revoke", "--tenant", "acme", key["id"], env=env)  # the README's order
    assert revoked.returncode == 0 and key["id"] in revoked.stdout
    assert "revoked" in darkroom("apikeys", "list", env=env).stdout
    assert_one_line_error(darkroom("apikeys", "create", env=env), "invalid_parameters", 2)
    assert_one_line_error(darkroom("apikeys", "create", "--tenant", "a b", env=env), "invalid_parameters", 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"not serving: {proc.communicate()}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return err


@pytest.mark.integration
@pytest.mark.parametrize("command", ["api", "run"])
def test_the_api_serves_on_its_port_and_stops_on_sigterm(settings: Settings, tmp_path: Path, command: str) -> None:
    port = _free_port()
    settings = settings.replace(database_url=f"sqlite:///{tmp_path / 'r.sqlite3'}", api_port=port)
    env = {**os.environ, **settings.to_env(), "DARKROOM_LOG_FORMAT": "json"}
    created = darkroom("apikeys", "create", "--tenant", "acme", "--json", env=env)
    token = json.loads(created.stdout)["token"]
    proc = _serving([command], env, port)
    try:
        ops = httpx.get(f"http://127.0.0.1:{port}/v1/operations", headers={"Authorization": f"Bearer {token}"})
        assert ops.status_code == 200 and ops.json()["presets"]
        if command == "api":  # the port is taken now
            assert_one_line_error(darkroom("api", "--host", "127.0.0.1", env=env), "configuration_error", 2)
    finally:
        _stop(proc)
