"""Result-writer events/s into PostgreSQL (batched vs. one transaction per event) and
webhook deliveries/s to a local receiver, in one run.

    .venv/bin/python benchmarks/sinks.py [--events 5000] [--batch 200] [--webhooks 500]
      [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Uses a throwaway database on the given server (created and dropped here). Prints one JSON
line on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from streams.config import load_settings
from streams.runtime.worker import Received
from streams.sinks import dispatcher
from streams.sinks.database import Database
from streams.sinks.results import ResultWriter
from streams.sinks.webhooks import new_secret


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
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--unbatched-events", type=int, default=500)
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    name = f"darkroom_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as home:
            settings = dataclasses.replace(
                load_settings(home=Path(home)),
                database_url=args.postgres.rsplit("/", 1)[0] + f"/{name}",
                webhook_allow_networks="127.0.0.1/32",
                webhook_max_in_flight_per_host=8,
                webhook_secrets=new_secret(),
            )
            db = Database(settings)
            db.migrate()
            writer = ResultWriter(settings, db)
            topic = settings.topic("images.completed")
            batched = write_rate(writer, [completion(i, "b") for i in range(args.events)], args.batch, topic)
            single = write_rate(writer, [completion(i, "s") for i in range(args.unbatched_events)], 1, topic)

            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            events = [{**completion(i, "w"), "callback_url": url} for i in range(args.webhooks)]
            with db.transaction() as tx:
                for event in events:
                    dispatcher.enqueue(tx, "completed", event)
            stop = threading.Event()
            service = dispatcher.Dispatcher(settings, Database(settings), concurrency=16)
            started = time.perf_counter()
            thread = threading.Thread(target=service.run, args=(stop,))
            thread.start()
            deadline = time.monotonic() + 300
            while len(dispatcher.deliveries(db, status="delivered")) < args.webhooks:
                if time.monotonic() > deadline or dispatcher.deliveries(db, status="exhausted"):
                    raise SystemExit("webhook deliveries did not all succeed; see the dispatcher log")
                time.sleep(0.05)
            webhook_rate = args.webhooks / (time.perf_counter() - started)
            stop.set()
            thread.join()
            service.db.close()
            db.close()
    finally:
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
                "webhook_dispatcher_concurrency": 16,
            }
        )
    )


if __name__ == "__main__":
    main()
