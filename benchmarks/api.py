"""The HTTP API under load: requests/s and p50/p99 latency of its two busiest requests.

Runs ``darkroom api`` as its own process on a throwaway embedded stack (SQLite result
store, no practical rate limit) and drives it from this process with ``--concurrency``
keep-alive httpx connections: ``GET /v1/images/{id}`` of a completed image with two
outputs (key check, two queries, two presigned URLs) and a direct ``POST /v1/images`` of
a small JPEG (key check, the object written to S3, the upload event acknowledged by the
broker, two writes). The reference, in the same run and through the same client, is
``GET /healthz`` of the same server: the ratios are what darkroom's work costs on top of
HTTP, uvicorn and the client itself (all on one machine).

    .venv/bin/python benchmarks/api.py [--requests 2000] [--posts 400] [--concurrency 8]

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from streams.api import keys
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.handlers.steps import worker_specs
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics
from streams.sinks.database import Database
from streams.sinks.results import results_spec
from streams.wire.events import Serdes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(name: str, count: int, concurrency: int, request: Callable[[], httpx.Response]) -> dict[str, Any]:
    """``count`` requests over ``concurrency`` threads; every answer must be a success."""
    per_thread = count // concurrency

    def worker(_: int) -> list[float]:
        took = []
        for _ in range(per_thread):
            started = time.perf_counter()
            response = request()
            took.append(time.perf_counter() - started)
            if response.status_code >= 300:
                raise SystemExit(f"{name}: HTTP {response.status_code} {response.text[:200]}")
        return took

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(t for took in pool.map(worker, range(concurrency)) for t in took)
    elapsed = time.perf_counter() - started
    return {
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def _completed_image(settings: Settings, http: httpx.Client) -> str:
    """A 2-megapixel photo through `web` (two outputs), with workers running only for it."""
    sink_db = Database(settings)
    specs = [*worker_specs(settings, ["ingest", "thumbnail"]), results_spec(settings, Serdes(settings), sink_db)]
    workers = Supervisor(settings, specs, resources=[sink_db])
    workers.start()
    try:
        photo = photo_jpeg(1600, 1200, seed=1)
        image_id = str(
            http.post("/v1/images?preset=web", content=photo, headers={"Content-Type": "image/jpeg"}).json()["id"]
        )
        deadline = time.monotonic() + 120
        while http.get(f"/v1/images/{image_id}").json()["status"] != "completed":
            if time.monotonic() > deadline:
                raise SystemExit("the image did not complete")
            time.sleep(0.2)
        return image_id
    finally:
        workers.stop.set()
        workers.join(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="GETs of each kind")
    parser.add_argument("--posts", type=int, default=400, help="direct uploads")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as home:
        port = _free_port()
        base = throwaway_settings(load_settings(log_format="json", log_level="warning"), Path(home))
        settings = base.replace(api_port=port, api_rate_per_minute=10**9)
        stack = Stack(settings)
        stack.up()
        server = None
        try:
            ensure_topics(settings)
            db = Database(settings)
            db.migrate()
            _, token = keys.create(db, "bench")
            env = {**os.environ, **settings.to_env()}
            server = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env)
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
                limits=httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency),
            ) as http:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("darkroom api did not start")
                    time.sleep(0.2)

                say("processing one image to read back…")
                image_id = _completed_image(settings, http)
                small = photo_jpeg(64, 48, seed=2)
                say(f"{args.requests} GET /healthz, {args.requests} GET /v1/images/{{id}}, {args.posts} direct POSTs…")
                health = _load("healthz", args.requests, args.concurrency, lambda: http.get("/healthz"))
                image = _load("get image", args.requests, args.concurrency, lambda: http.get(f"/v1/images/{image_id}"))
                post = _load(
                    "direct post",
                    args.posts,
                    args.concurrency,
                    lambda: http.post(
                        "/v1/images?preset=preview", content=small, headers={"Content-Type": "image/jpeg"}
                    ),
                )
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
            stack.down()
    print(
        json.dumps(
            {
                "benchmark": "api",
                "concurrency": args.concurrency,
                "reference_healthz": health,
                "get_image": image,
                "direct_post": post,
                "get_image_to_healthz_ratio": round(image["requests_per_s"] / health["requests_per_s"], 2),
                "direct_post_to_healthz_ratio": round(post["requests_per_s"] / health["requests_per_s"], 3),
                "direct_post_bytes": len(small),
            }
        )
    )


if __name__ == "__main__":
    main()
