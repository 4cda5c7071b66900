"""Result-writer events/s into PostgreSQL (batched vs. one transaction per event),
webhook deliveries/s to a local receiver, and deliveries/s to one slow host (a backlog
behind its per-host limit) with the dispatcher's transactions per delivery, in one run.

    .venv/bin/python benchmarks/sinks.py [--events 5000] [--batch 200] [--webhooks 500]
      [--slow-webhooks 200] [--slow-s 0.2] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Uses a throwaway database on the given server (created and dropped here). Prints one JSON
line on stdout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import structlog

from streams.config import Settings, load_settings
from streams.runtime.worker import Received
from streams.sinks import dispatcher, outbox
from streams.sinks.database import Database
from streams.sinks.results import ResultWriter
from streams.sinks.webhooks.signing import new_secret

CONCURRENCY = 16
MAX_IN_FLIGHT_PER_HOST = 8


def completion(i: int, run: str) -> dict[str, Any]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    return {
        "event_id": f"{run}-done-{i}",
        "upload_event_id": f"{run}-up-{i}",
        "image_id": f"{run}-img-{i}",
        "bucket": "darkroom",
        "source_key": f"uploads/{i}.jpg",
        "pipeline": [{"operation": "thumbnail", "params": {"sizes": "256"}}],
        "outputs": [
            {
                "step_index": 0,
                "operation": "thumbnail",
                "name": "thumb-256",
                "bucket": "darkroom",
                "key": f"derived/{i}/thumb-256.jpg",
                "size": 12345,
                "width": 256,
                "height": 171,
                "content_type": "image/jpeg",
                "sha256": "ab" * 32,
            }
        ],
        "timings": [],
        "callback_url": None,
        "tenant": "bench",
        "submitted_at": t0,
        "completed_at": t0 + timedelta(seconds=1),
    }


def write_rate(writer: ResultWriter, events: list[dict[str, Any]], batch: int, topic: str) -> float:
    log = structlog.get_logger("bench")
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        writer([(Received(topic, 0, n, b"", None), e) for n, e in enumerate(events[i : i + batch])], log)
    return len(events) / (time.perf_counter() - started)


class _Ok(BaseHTTPRequestHandler):
    delay_s = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.delay_s)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve(delay_s: float) -> ThreadingHTTPServer:
    """A receiver on loopback answering 204 after ``delay_s``."""
    handler = type("Handler", (_Ok,), {"delay_s": delay_s})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def delivery_rate(settings: Settings, db: Database, url: str, count: int, run: str) -> tuple[float, float]:
    """Deliveries/s of a backlog of ``count`` to ``url``, and the dispatcher's transactions per delivery."""
    events = [{**completion(i, run), "callback_url": url} for i in range(count)]
    with db.transaction() as tx:
        for event in events:
            outbox.enqueue(tx, "completed", event)
    stop = threading.Event()
    service = dispatcher.Dispatcher(settings, Database(settings), concurrency=CONCURRENCY)
    started = time.perf_counter()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 300
    records = outbox.Outbox(db)
    while len(records.deliveries(status="delivered")) < count:
        if time.monotonic() > deadline or records.deliveries(status="exhausted"):
            raise SystemExit("webhook deliveries did not all succeed; see the dispatcher log")
        time.sleep(0.05)
    rate = count / (time.perf_counter() - started)
    transactions = service.db.transactions
    stop.set()
    thread.join()
    service.db.close()
    with db.transaction() as tx:
        tx.execute("DELETE FROM webhook_deliveries")
    return rate, transactions / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--unbatched-events", type=int, default=500)
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--slow-webhooks", type=int, default=200)
    parser.add_argument("--slow-s", type=float, default=0.2, help="seconds the slow host takes per request")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    name = f"darkroom_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    servers = [serve(0.0), serve(args.slow_s)]
    try:
        with tempfile.TemporaryDirectory() as home:
            settings = load_settings(home=Path(home)).replace(
                database_url=args.postgres.rsplit("/", 1)[0] + f"/{name}",
                webhook_allow_networks="127.0.0.1/32",
                webhook_max_in_flight_per_host=MAX_IN_FLIGHT_PER_HOST,
                webhook_secrets=new_secret(),
            )
            db = Database(settings)
            db.migrate()
            writer = ResultWriter(settings, db)
            topic = settings.topic("images.completed")
            batched = write_rate(writer, [completion(i, "b") for i in range(args.events)], args.batch, topic)
            single = write_rate(writer, [completion(i, "s") for i in range(args.unbatched_events)], 1, topic)

            fast_url, slow_url = (f"http://127.0.0.1:{s.server_address[1]}/hook" for s in servers)
            webhook_rate, _ = delivery_rate(settings, db, fast_url, args.webhooks, "w")
            slow_rate, slow_transactions = delivery_rate(settings, db, slow_url, args.slow_webhooks, "slow")
            db.close()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    print(
        json.dumps(
            {
                "benchmark": "sinks",
                "result_writer_events_per_s_batched": round(batched, 1),
                "batch_size": args.batch,
                "result_writer_events_per_s_one_per_transaction": round(single, 1),
                "batching_speedup": round(batched / single, 2),
                "webhook_deliveries_per_s": round(webhook_rate, 1),
                "webhook_dispatcher_concurrency": CONCURRENCY,
                "webhook_max_in_flight_per_host": MAX_IN_FLIGHT_PER_HOST,
                "slow_host_request_s": args.slow_s,
                "slow_host_deliveries": args.slow_webhooks,
                "slow_host_deliveries_per_s": round(slow_rate, 1),
                # the per-host limit allows at most MAX_IN_FLIGHT_PER_HOST / slow_s per second
                "slow_host_share_of_limit": round(slow_rate * args.slow_s / MAX_IN_FLIGHT_PER_HOST, 2),
                "slow_host_transactions_per_delivery": round(slow_transactions, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
