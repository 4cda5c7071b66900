"""The delivery bar under faults: N uploads through the whole pipeline while things break.

    .venv/bin/python benchmarks/chaos.py [--images 2000] [--seed 1] [--rate UPLOADS_PER_S]
      [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

On an embedded stack of its own (tansu keeping its log in the SeaweedFS it stops and
freezes, as the embedded default does), it runs every service as its own `darkroom
worker` process: ingest, two thumbnail workers, the result writer on a throwaway
PostgreSQL database and the webhook dispatcher, which posts to a loopback receiver that
answers 500 to one attempt in five. Uploads are submitted at ``--rate`` per second
(default: all of them spread over 120 s; a producer that retries while the store or the
broker is down) while the benchmark

- SIGKILLs a random worker every 3–6 s and starts it again,
- stops the object store (refused connections) for 30 s, then starts it again,
- freezes the object store (SIGSTOP) for 45 s,
- freezes the broker for 15 s,

then waits until every image has its result row and every webhook was delivered.

Prints one JSON line: images, completed, failed, lost (no row), duplicate rows,
webhook-id mismatches (an image whose webhooks carry an id other than its final event's),
unverified webhooks (svix, an independent implementation, checks every request),
kills, workers that exited on their own (and were restarted), tracebacks in the workers'
logs, how often workers paused for an outage and rebuilt a producer, final lag of every
group, drain seconds (from when both the faults and the submissions ended until the last
row and webhook), and
the bar: ``ok`` is true when lost, failed, duplicate rows, mismatches, unverified,
tracebacks and lag are all 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from svix.webhooks import Webhook, WebhookVerificationError

from processors.errors import DarkroomError
from streams.client import Client, Submission
from streams.config import load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.runtime.logs import configure_logging
from streams.runtime.topics import COMPLETED, FAILED, UPLOADED, committed_lag, ensure_topics, step_topic
from streams.sinks.webhooks import new_secret

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "thumbnail", "thumbnail", "results", "webhooks")
PIPELINE = "thumbnail:sizes=96+320,format=webp"


class Receiver(ThreadingHTTPServer):
    """Loopback webhook receiver: 500 to one attempt in five, svix-verifies every request."""

    def __init__(self, secret: str, seed: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.webhook = Webhook(secret)
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.ids: dict[str, set[str]] = defaultdict(set)
        self.delivered: set[str] = set()
        self.unverified = 0


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        try:
            payload = server.webhook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            with server.lock:
                server.unverified += 1
            self.send_response(400)
            self.end_headers()
            return
        with server.lock:
            fail = server.random.random() < 0.2
            image_id = payload["data"]["image_id"]
            server.ids[image_id].add(self.headers["webhook-id"])
            if not fail:
                server.delivered.add(image_id)
        self.send_response(500 if fail else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Fleet:
    """The worker processes; a killed one is started again at once, and one that exited
    is started again within a second (what an orchestrator would do)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = [self._start(i) for i in range(len(SERVICES))]
        self.kills = 0
        self.exits = 0

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        with (self.logs / f"{i}-{SERVICES[i]}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", SERVICES[i]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def restart_exited(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.exits += 1
                self.procs[i] = self._start(i)

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.kills += 1
        self.procs[i] = self._start(i)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _submit_all(client: Client, seed: int, n: int, rate: float, images: list[bytes], callback: str) -> list[Submission]:
    """Submit ``n`` uploads at ``rate``/s, retrying each while the store or the broker is
    down; an idempotency key per upload keeps a retried submit the same upload."""
    subs: list[Submission] = []
    started = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        while True:
            try:
                subs.append(
                    client.submit(
                        images[i % len(images)],
                        f"c{i}.jpg",
                        PIPELINE,
                        image_id=f"chaos{seed}-{i}",
                        idempotency_key=f"chaos{seed}-{i}",
                        callback_url=callback,
                    )
                )
                break
            except DarkroomError:
                time.sleep(1.0)
    return subs


def _faults(stack: Stack, fleet: Fleet, rng: random.Random, done: threading.Event) -> None:
    """The schedule: kills every 3–6 s throughout; store stopped, store frozen, broker frozen."""
    state = stack._state()

    def kills_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            next_kill = time.monotonic() + rng.uniform(3, 6)
            while time.monotonic() < min(next_kill, end):
                time.sleep(0.5)
                fleet.restart_exited()
            if time.monotonic() < end:
                fleet.kill_one(rng)

    kills_for(5)
    os.kill(state["weed"], signal.SIGKILL)  # refused connections from now on
    kills_for(30)
    stack.up()
    kills_for(10)
    weed = stack._state()["weed"]
    os.kill(weed, signal.SIGSTOP)
    kills_for(45)
    os.kill(weed, signal.SIGCONT)
    kills_for(10)
    tansu = stack._state()["tansu"]
    os.kill(tansu, signal.SIGSTOP)
    kills_for(15)
    os.kill(tansu, signal.SIGCONT)
    kills_for(10)
    done.set()


def run(images: int, seed: int, rate: float, postgres: str) -> dict[str, Any]:
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="darkroom-chaos-"))
    db_name = f"darkroom_chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db_name}")
    db_url = postgres.rsplit("/", 1)[0] + f"/{db_name}"
    secret = new_secret()
    receiver = Receiver(secret, seed)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    settings = throwaway_settings(
        load_settings(home=home, log_format="json", session_timeout_ms=6000, database_url=db_url), home
    )
    settings = dataclasses.replace(settings, retry_backoff_s=0.5, retry_max_backoff_s=5.0, storage_attempts=3)
    configure_logging(dataclasses.replace(settings, log_level="error"))  # stdout is for the JSON line
    stack = Stack(settings)
    stack.up()
    ensure_topics(settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        **settings.to_env(),
        "DARKROOM_WEBHOOK_SECRETS": secret,
        "DARKROOM_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
        "DARKROOM_WEBHOOK_SCHEDULE": ",".join(["0"] + ["1"] * 29),
        "DARKROOM_WEBHOOK_TIMEOUT_S": "5",
    }
    (home / "logs").mkdir(exist_ok=True)
    fleet = Fleet(env, home / "logs")
    client = Client(settings)
    client_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    pictures = [photo_jpeg(1024, 768, seed=seed * 100 + k) for k in range(8)]
    faults_over = threading.Event()
    try:
        chaos = threading.Thread(target=_faults, args=(stack, fleet, rng, faults_over))
        chaos.start()
        subs = _submit_all(client, seed, images, rate, pictures, client_url)
        chaos.join()
        drained_from = time.monotonic()
        wanted = {s.image_id for s in subs}
        rows: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with psycopg.connect(db_url) as conn:
                rows = {
                    r[0]: {"status": r[1], "final_event_id": r[2]}
                    for r in conn.execute("SELECT image_id, status, final_event_id FROM results").fetchall()
                }
            with receiver.lock:
                delivered = set(receiver.delivered)
            if wanted <= set(rows) and wanted <= delivered:
                break
            fleet.restart_exited()
            time.sleep(1.0)
        drain_s = time.monotonic() - drained_from
        groups = {
            "darkroom.ingest": [UPLOADED],
            "darkroom.thumbnail": [step_topic("thumbnail")],
            "darkroom.results": [COMPLETED, FAILED],
        }
        lag = {
            g: committed_lag(settings, settings.topic(g), [settings.topic(t) for t in topics])
            for g, topics in groups.items()
        }
    finally:
        fleet.stop()
        stack.down()
        receiver.shutdown()
    with psycopg.connect(db_url) as conn:  # rows beyond one per image, and deliveries beyond one per image and target
        duplicates = sum(
            conn.execute(sql).fetchone()[0]  # type: ignore[index]
            for sql in (
                "SELECT COUNT(*) - COUNT(DISTINCT image_id) FROM results",
                "SELECT COUNT(*) - COUNT(DISTINCT (image_id, target)) FROM webhook_deliveries",
            )
        )
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {db_name} WITH (FORCE)")
    with receiver.lock:
        mismatches = sum(1 for i in wanted if i in rows and receiver.ids.get(i, set()) - {rows[i]["final_event_id"]})
        undelivered = len(wanted - receiver.delivered)
        unverified = receiver.unverified
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*.log"))
    figures: dict[str, Any] = {
        "benchmark": "chaos",
        "seed": seed,
        "images": len(wanted),
        "completed": sum(1 for i in wanted if rows.get(i, {}).get("status") == "completed"),
        "failed": sum(1 for i in wanted if rows.get(i, {}).get("status") == "failed"),
        "lost": len(wanted - set(rows)),
        "duplicate_rows": duplicates,
        "webhook_id_mismatches": mismatches,
        "webhooks_undelivered": undelivered,
        "unverified_webhooks": unverified,
        "kills": fleet.kills,
        "exits": fleet.exits,
        "tracebacks": logs.count("Traceback"),
        "pauses": logs.count("dependency unavailable; paused"),
        "producer_rebuilds": logs.count("producer unusable; building a new one"),
        "final_lag": lag,
        "drain_seconds": round(drain_s, 1),
    }
    bad = ("lost", "failed", "duplicate_rows", "webhook_id_mismatches", "unverified_webhooks", "tracebacks")
    figures["ok"] = all(figures[k] == 0 for k in bad) and sum(lag.values()) == 0 and undelivered == 0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="uploads/s (default: images spread over 120 s)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    rate = args.rate or args.images / 120.0
    print(json.dumps(run(args.images, args.seed, rate, args.postgres)), flush=True)


if __name__ == "__main__":
    main()
