"""The delivery bar under faults: N uploads through the whole pipeline while things break.

    .venv/bin/python benchmarks/chaos.py [--images 2000] [--seed 1] [--rate 12] [--processes]
      [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

On an embedded stack of its own (tansu keeping its log in the SeaweedFS it kills and
freezes, as the embedded default does), it runs ingest, two thumbnail workers, the result
writer on a throwaway PostgreSQL database and the webhook dispatcher, which posts to a
loopback receiver that answers 500 to one attempt in five. By default each is its own
`darkroom worker` process, started again at once when killed (as an orchestrator would);
with ``--processes`` they are the children of one `darkroom run --processes`, whose
supervisor restarts the killed ones. Uploads are submitted at ``--rate`` per second (a
producer that retries while the store or the broker is down) while the benchmark repeats,
until the submissions are over (at least once), this schedule:

- a random worker SIGKILLed every 3–6 s throughout,
- the object store frozen (SIGSTOP) for 45 s,
- the broker frozen for 15 s,
- the object store SIGKILLed and left dead for 30 s, then started again (`Stack.up`),
- the broker SIGKILLed and left dead for 10 s, then started again;

then it waits until every image has its result row and every webhook was delivered.

Every 3 s it asks the broker for each group's committed offsets and each partition's end
(``fetched_ends``). Counted from the end of the last store or broker fault (an outage
pauses work by design): ``longest_stall_s`` is the longest a group held lag while none of
its committed offsets moved; ``longest_silence_s`` the longest a worker process wrote no
log line while its group held lag; ``longest_partition_wait_s`` the longest one partition
held lag without its offset moving, which also counts a partition waiting behind the
others of its worker in a backlog (reported, not part of the bar).

Prints one JSON line: images, completed, failed, lost (no row), duplicate rows,
webhook-id mismatches (an image whose webhooks carry an id other than its final event's),
unverified webhooks (svix, an independent implementation, checks every request),
kills of workers, of the store and of the broker, worker restarts after exits of their
own, tracebacks in the workers' logs, pauses, producer rebuilds, watchdog rebuilds,
final lag of every group, the longest stall and silence, drain seconds (from when both
the faults and the submissions ended until the last row and webhook), and the bar:
``ok`` is true when lost, failed, duplicate rows, mismatches, unverified, tracebacks and
lag are all 0 and no stall or silence lasted more than 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
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
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaException, TopicPartition
from svix.webhooks import Webhook, WebhookVerificationError

from processors.errors import DarkroomError
from streams.client import Client, Submission
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.runtime.kafka import make_consumer
from streams.runtime.logs import configure_logging
from streams.runtime.offsets import committed_lag, fetched_ends
from streams.runtime.topics import COMPLETED, FAILED, UPLOADED, ensure_topics, step_topic
from streams.sinks.webhooks.signing import new_secret

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "thumbnail", "thumbnail", "results", "webhooks")
PROCESSES = "ingest=1,enhance=0,upscale=0,thumbnail=2,results=1,webhooks=1"
"""The same services as ``SERVICES``, as children of one `darkroom run --processes`."""
PIPELINE = "thumbnail:sizes=96+320,format=webp"
GROUPS = {
    "ingest": [UPLOADED],
    "thumbnail": [step_topic("thumbnail")],
    "results": [COMPLETED, FAILED],
}
BAR_S = 60.0
"""The longest a partition may hold lag without progress, or a worker with lag stay silent."""


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


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


class Fleet:
    """Each service its own process; a killed one is started again at once, and one that
    exited is started again within a second (what an orchestrator would do)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs = [self._start(i) for i in range(len(SERVICES))]
        self.kills = 0
        self.exits = 0

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        return _start(["worker", SERVICES[i]], self.env, self.logs / f"{i}-{SERVICES[i]}.log")

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


class Supervised:
    """The services as children of one `darkroom run --processes`: a kill hits a random
    child, and the supervisor (never killed here) restarts it with its own backoff."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.log = logs / "supervised.log"
        self.proc = _start(["run", "--processes", PROCESSES], env, self.log)
        self.kills = 0
        self.exits = 0

    def _children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in path.read_text().split()]
        return []

    def restart_exited(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"the supervisor exited with {self.proc.returncode}; see {self.log}")

    def kill_one(self, rng: random.Random) -> None:
        children = self._children()
        if children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rng.choice(children), signal.SIGKILL)
                self.kills += 1

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # exits of a child that nobody killed (the supervisor logs every exit)
        restarts = self.log.read_text(errors="replace").count("process exited; restarting")
        self.exits = max(0, restarts - self.kills)


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


@dataclasses.dataclass
class Faults:
    """The schedule, repeated until ``submitted`` is set; when the last store or broker fault ended."""

    stack: Stack
    fleet: Fleet | Supervised
    rng: random.Random
    submitted: threading.Event
    over: threading.Event = dataclasses.field(default_factory=threading.Event)
    active: bool = False
    """A store or broker fault is in progress (its outage pauses work by design)."""
    last_ended: float = dataclasses.field(default_factory=time.monotonic)
    windows: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    """Each store or broker fault's (start, end), wall-clock seconds."""
    store_kills: int = 0
    broker_kills: int = 0
    cycles: int = 0

    def _kills_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            next_kill = time.monotonic() + self.rng.uniform(3, 6)
            while time.monotonic() < min(next_kill, end):
                time.sleep(0.5)
                self.fleet.restart_exited()
            if time.monotonic() < end:
                self.fleet.kill_one(self.rng)

    def _pid(self, name: str) -> int:
        return self.stack._state()[name]

    @contextlib.contextmanager
    def _fault(self) -> Iterator[None]:
        self.active, started = True, time.time()
        try:
            yield
        finally:
            self.active, self.last_ended = False, time.monotonic()
            self.windows.append((started, time.time()))

    def _frozen(self, name: str, seconds: float) -> None:
        with self._fault():
            pid = self._pid(name)
            os.kill(pid, signal.SIGSTOP)
            try:
                self._kills_for(seconds)
            finally:
                os.kill(pid, signal.SIGCONT)

    def _killed(self, name: str, seconds: float) -> None:
        with self._fault():
            os.kill(self._pid(name), signal.SIGKILL)
            self._kills_for(seconds)
            self.stack.up(timeout_s=60)  # what `darkroom stack up` does

    def run(self) -> None:
        while True:
            self.cycles += 1
            self._kills_for(10)
            self._frozen("weed", 45)
            self._kills_for(10)
            self._frozen("tansu", 15)
            self._kills_for(10)
            self.store_kills += 1
            self._killed("weed", 30)
            self._kills_for(10)
            self.broker_kills += 1
            self._killed("tansu", 10)
            self._kills_for(10)
            if self.submitted.is_set():
                break
        self.over.set()


class Watch:
    """Samples, every few seconds, each group's committed offsets and each partition's end
    as the broker reports them, and keeps, counted from the end of the last store or broker
    fault: the longest a group held lag while its committed offsets did not move at all (a
    stalled group), and the longest one partition did (which also counts a partition
    waiting behind its worker's others: information, not the bar)."""

    def __init__(self, settings: Settings, faults: Faults) -> None:
        self.settings, self.faults = settings, faults
        self.stop = threading.Event()
        self.last: dict[tuple[str, str, int], int] = {}
        self.since: dict[tuple[str, str, int], float] = {}
        self.group_last: dict[str, int] = {}
        self.group_since: dict[str, float] = {}
        self.longest_stall_s = 0.0
        self.worst: str | None = None
        self.longest_wait_s = 0.0
        self.worst_wait: str | None = None
        self.lagging: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        """Per service: (wall-clock time, whether its group held lag) at each sample."""

    def _sample(self) -> None:
        now, wall = time.monotonic(), time.time()
        floor = now if self.faults.active else self.faults.last_ended
        for name, topics in GROUPS.items():
            consumer = make_consumer(self.settings, self.settings.topic(f"darkroom.{name}"))
            try:
                wanted = [
                    TopicPartition(self.settings.topic(t), p) for t in topics for p in range(self.settings.partitions)
                ]
                committed = consumer.committed(wanted, timeout=5)
            finally:
                consumer.close()
            ends = fetched_ends(self.settings, committed, timeout_s=5)
            lags = {(tp.topic, tp.partition): ends[(tp.topic, tp.partition)] - max(tp.offset, 0) for tp in committed}
            for tp in committed:
                key, offset = (name, tp.topic, tp.partition), max(tp.offset, 0)
                if lags[(tp.topic, tp.partition)] <= 0 or self.last.get(key) != offset:
                    self.since[key] = now
                self.last[key] = offset
                if (waited := now - max(self.since[key], floor)) > self.longest_wait_s:
                    lag = lags[(tp.topic, tp.partition)]
                    self.longest_wait_s, self.worst_wait = waited, f"{name} {tp.topic} [{tp.partition}] lag {lag}"
            total, held = sum(max(tp.offset, 0) for tp in committed), sum(max(0, lag) for lag in lags.values())
            if held <= 0 or self.group_last.get(name) != total:
                self.group_since[name] = now
            self.group_last[name] = total
            if (stalled := now - max(self.group_since[name], floor)) > self.longest_stall_s:
                self.longest_stall_s, self.worst = stalled, f"{name} lag {held}"
            self.lagging[name].append((wall, held > 0))

    def run(self) -> None:
        while not self.stop.wait(3.0):
            with contextlib.suppress(DarkroomError, KafkaException):  # the broker is down: no sample
                self._sample()


def _longest_silence(logs: Path, watch: Watch, windows: list[tuple[float, float]]) -> tuple[float, str | None]:
    """The longest gap between two log lines of one worker process (by service and pid)
    while its group held lag at every sample in between, counted from the end of the
    last store or broker fault before the gap's end (none if one was still going on)."""
    lines: dict[tuple[str, int], list[float]] = defaultdict(list)
    for path in logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                if entry.get("worker") in GROUPS:
                    at = datetime.fromisoformat(entry["timestamp"]).timestamp()
                    lines[(entry["worker"], entry["pid"])].append(at)
    longest, worst = 0.0, None
    for (service, pid), times in lines.items():
        samples = watch.lagging[service]
        for before, after in itertools.pairwise(sorted(times)):
            if any(begun < after < ended for begun, ended in windows):
                continue
            start = max([before, *[ended for _, ended in windows if ended <= after]])
            inside = [held for at, held in samples if start <= at <= after]
            if inside and all(inside) and after - start > longest:
                longest, worst = after - start, f"{service} pid {pid}"
    return longest, worst


def run(images: int, seed: int, rate: float, postgres: str, processes: bool) -> dict[str, Any]:
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
    settings = settings.replace(
        retry_backoff_s=0.5,
        retry_max_backoff_s=5.0,
        storage_attempts=3,
        stuck_after_s=BAR_S / 2,
        webhook_secrets=secret,
        webhook_allow_networks="127.0.0.1/32",  # the receiver, for the client's check and the dispatcher's
        webhook_schedule=",".join(["0"] + ["1"] * 29),
        webhook_timeout_s=5.0,
    )
    configure_logging(settings.replace(log_level="error"))  # stdout is for the JSON line
    stack = Stack(settings)
    stack.up()
    ensure_topics(settings)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}, **settings.to_env()}
    logs = home / "logs" / "workers"
    logs.mkdir(parents=True)
    fleet: Fleet | Supervised = Supervised(env, logs) if processes else Fleet(env, logs)
    client = Client(settings)
    client_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    pictures = [photo_jpeg(1024, 768, seed=seed * 100 + k) for k in range(8)]
    submitted = threading.Event()
    faults = Faults(stack, fleet, rng, submitted)
    watch = Watch(settings, faults)
    try:
        chaos = threading.Thread(target=faults.run)
        chaos.start()
        watcher = threading.Thread(target=watch.run, daemon=True)
        watcher.start()
        subs = _submit_all(client, seed, images, rate, pictures, client_url)
        submitted.set()
        chaos.join()
        drained_from = time.monotonic()
        wanted = {s.image_id for s in subs}
        rows: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 900
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
        watch.stop.set()
        watcher.join(30)
        lag = {
            g: committed_lag(settings, settings.topic(f"darkroom.{g}"), [settings.topic(t) for t in topics])
            for g, topics in GROUPS.items()
        }
    finally:
        submitted.set()
        fleet.stop()
        stack.down()
        receiver.shutdown()
        receiver.server_close()
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
    text = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    silence_s, silent = _longest_silence(logs, watch, faults.windows)
    figures: dict[str, Any] = {
        "benchmark": "chaos",
        "mode": "processes" if processes else "separate",
        "seed": seed,
        "images": len(wanted),
        "rate": rate,
        "completed": sum(1 for i in wanted if rows.get(i, {}).get("status") == "completed"),
        "failed": sum(1 for i in wanted if rows.get(i, {}).get("status") == "failed"),
        "lost": len(wanted - set(rows)),
        "duplicate_rows": duplicates,
        "webhook_id_mismatches": mismatches,
        "webhooks_undelivered": undelivered,
        "unverified_webhooks": unverified,
        "fault_cycles": faults.cycles,
        "kills": fleet.kills,
        "store_kills": faults.store_kills,
        "broker_kills": faults.broker_kills,
        "exits": fleet.exits,
        "tracebacks": text.count("Traceback"),
        "pauses": text.count("dependency unavailable; paused"),
        "producer_rebuilds": text.count("producer unusable; building a new one"),
        "watchdog_rebuilds": text.count("stalled; rebuilding"),
        "final_lag": lag,
        "longest_stall_s": round(watch.longest_stall_s, 1),
        "longest_stall": watch.worst,
        "longest_partition_wait_s": round(watch.longest_wait_s, 1),
        "longest_partition_wait": watch.worst_wait,
        "longest_silence_s": round(silence_s, 1),
        "longest_silence": silent,
        "drain_seconds": round(drain_s, 1),
    }
    bad = ("lost", "failed", "duplicate_rows", "webhook_id_mismatches", "unverified_webhooks", "tracebacks")
    figures["ok"] = (
        all(figures[k] == 0 for k in bad)
        and sum(lag.values()) == 0
        and undelivered == 0
        and watch.longest_stall_s <= BAR_S
        and silence_s <= BAR_S
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=12.0, help="uploads/s")
    parser.add_argument("--processes", action="store_true", help="run the workers under `darkroom run --processes`")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(json.dumps(run(args.images, args.seed, args.rate, args.postgres, args.processes)), flush=True)


if __name__ == "__main__":
    main()
