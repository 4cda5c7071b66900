"""Thumbnails/s through the whole Kafka + S3 pipeline vs. the same processor in-process.

Runs on a throwaway embedded stack (own home, free ports). Both sides process the same
12-megapixel JPEGs into 3 sizes, sequentially (one thumbnail worker = one consumer, one
core of image work), so the ratio isolates the cost of the pipeline: S3 reads and writes,
Avro, produce + delivery wait, synchronous commit. Latency is completed_at - submitted_at
of each image while all of them are queued at once (a burst), so it includes queueing.

    .venv/bin/python benchmarks/pipeline.py [--images 48] [--sizes 256+512+1024]

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from processors import get_operation
from streams.client import Client
from streams.config import load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.handlers.steps import worker_specs
from streams.runtime.logs import configure_logging
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    # 48 images (~6 s of work): with fewer, the fixed start and end of the burst (first
    # fetch, last completion noticed by the client) weigh on the throughput figure
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--distinct", type=int, default=6, help="distinct source photos, cycled")
    parser.add_argument("--sizes", default="256+512+1024")
    args = parser.parse_args()
    spec = f"thumbnail:sizes={args.sizes},format=jpeg"
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    say(f"generating {args.distinct} distinct 4000x3000 JPEGs…")
    photos = [photo_jpeg(4000, 3000, seed=100 + i) for i in range(args.distinct)]
    inputs = [photos[i % len(photos)] for i in range(args.images)]

    op = get_operation("thumbnail")
    base = load_settings(log_format="json", log_level="warning")
    params = op.parse_params({"sizes": args.sizes, "format": "jpeg"})
    op.run(inputs[0], params, base.limits)  # warm up codecs
    started = time.perf_counter()
    for data in inputs:
        op.run(data, params, base.limits)
    inproc_s = time.perf_counter() - started
    say(f"in-process: {args.images / inproc_s:.2f} images/s")

    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as home:
        settings = throwaway_settings(base, Path(home))
        log = (Path(home) / "workers.log").open("w")
        configure_logging(settings, stream=log)
        stack = Stack(settings)
        stack.up()
        supervisor = None
        try:
            ensure_topics(settings)
            supervisor = Supervisor(settings, worker_specs(settings, ["ingest", "thumbnail"]))
            supervisor.start()
            with Client(settings) as client:
                warm = client.submit(inputs[0], "warmup.jpg", spec)
                if client.wait([warm], timeout_s=120).get(warm.image_id) is None:
                    raise SystemExit("warm-up image did not complete")
                say("workers warm; submitting the burst…")
                # Upload first so that the timed part is the pipeline, not the producer's upload.
                keys = []
                for i, data in enumerate(inputs):
                    key = f"bench/{warm.image_id}/{i}.jpg"
                    client.store.put(settings.bucket, key, data, content_type="image/jpeg")
                    keys.append(key)
                started = time.perf_counter()
                subs = [client.emit(key, spec) for key in keys]
                finals = client.wait(subs, timeout_s=600)
                pipeline_s = time.perf_counter() - started
        finally:
            if supervisor is not None:
                supervisor.stop.set()
                supervisor.join(60)
            stack.down()
            log.close()
    completed = [f.event for f in finals.values() if f.status == "completed"]
    latencies = [(e["completed_at"] - e["submitted_at"]).total_seconds() for e in completed]
    inproc_ips = args.images / inproc_s
    pipeline_ips = len(completed) / pipeline_s
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "images": args.images,
                "source": "4000x3000 JPEG q90",
                "sizes": args.sizes,
                "completed": len(completed),
                "inprocess_images_per_s": round(inproc_ips, 3),
                "pipeline_images_per_s": round(pipeline_ips, 3),
                "inprocess_thumbnails_per_s": round(inproc_ips * len(params.sizes), 3),
                "pipeline_thumbnails_per_s": round(pipeline_ips * len(params.sizes), 3),
                "ratio": round(pipeline_ips / inproc_ips, 3),
                "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
                "latency_p95_s": round(_percentile(latencies, 0.95), 3) if latencies else None,
            }
        )
    )


if __name__ == "__main__":
    main()
