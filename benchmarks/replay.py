"""Replay of a 10,000-upload time range: seconds to select it, uploads re-emitted per second.

Runs on a throwaway embedded stack (own home, free ports). Fills the upload topic with
``--uploads`` upload events (timestamps spread over an hour, plus as many outside the
range), times ``select`` for the range and ``replay.run`` for the selection, and, as the
reference in the same run, the raw produce rate of the fill itself (the same records
through the same producer settings, without selection or state): the ratio is what
selection bookkeeping and per-batch state saving cost.

    .venv/bin/python benchmarks/replay.py [--uploads 10000]

Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.config import load_settings
from streams.dev.stack import Stack, throwaway_settings
from streams.replay import replay
from streams.replay.select import Selection, select
from streams.runtime.kafka import make_producer
from streams.runtime.topics import UPLOADED, ensure_topics
from streams.wire.events import Serdes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=10_000)
    args = parser.parse_args()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as home:
        settings = throwaway_settings(load_settings(log_format="json", log_level="warning"), Path(home))
        stack = Stack(settings)
        stack.up()
        try:
            ensure_topics(settings)
            topic, serde = settings.topic(UPLOADED), Serdes(settings).upload
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
            producer = make_producer(settings)
            total = 2 * args.uploads  # half inside the range, half an hour before it
            say(f"filling {topic} with {total} uploads…")
            filled = time.perf_counter()
            for i in range(total):
                inside = i % 2 == 0
                at = start + timedelta(hours=1 if inside else 0, seconds=3600 * i / total)
                event: dict[str, object] = {
                    "event_id": f"bench-{i}",
                    "image_id": f"img{i}",
                    "bucket": settings.bucket,
                    "key": f"uploads/img{i}/a.jpg",
                    "pipeline": [{"operation": "thumbnail", "params": {"sizes": "64"}}],
                    "submitted_at": at,
                }
                producer.produce(topic, serde.encode(event, topic), key=f"img{i}", timestamp=int(at.timestamp() * 1000))
                producer.poll(0)
            if producer.flush(120) != 0:
                raise SystemExit("the fill was not acknowledged")
            produce_rate = total / (time.perf_counter() - filled)

            say("selecting the range…")
            selecting = time.perf_counter()
            found = select(settings, Selection(since=start + timedelta(hours=1), until=start + timedelta(hours=2)))
            select_s = time.perf_counter() - selecting
            if len(found.uploads) != args.uploads:
                raise SystemExit(f"selected {len(found.uploads)}, expected {args.uploads}")

            say(f"replaying {len(found.uploads)} uploads…")
            state = replay.new_state(found.uploads, replay.ReplayOptions())
            emitting = time.perf_counter()
            replay.run(settings, state)
            replay_rate = len(state.uploads) / (time.perf_counter() - emitting)
        finally:
            stack.down()
    print(
        json.dumps(
            {
                "benchmark": "replay",
                "uploads_in_range": args.uploads,
                "records_on_topic": total,
                "select_s": round(select_s, 2),
                "records_scanned_per_s": round(found.scanned / select_s, 1),
                "replay_uploads_per_s": round(replay_rate, 1),
                "reference_produce_per_s": round(produce_rate, 1),
                "replay_to_produce_ratio": round(replay_rate / produce_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
