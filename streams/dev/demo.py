"""``darkroom demo``: the main job end to end on the embedded stack.

Starts the stack (unless configured externally), provisions topics, runs the ingest and
operation workers in this process, submits the sample images, shows progress while it
waits for every final event, and prints a summary. Worker logs go to a file so the
terminal shows only the progress and the result.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from processors import AVAILABLE_OPERATIONS
from processors.image import encoded_has_transparency
from streams.client import Client, summarize
from streams.config import Settings
from streams.dev.progress import wait_with_progress
from streams.dev.samples import sample_set
from streams.dev.stack import Stack
from streams.handlers.steps import worker_specs
from streams.runtime.logs import configure_logging
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics

PIPELINE = "enhance,thumbnail:sizes=256+1024,format=webp,quality=80"


def run_demo(settings: Settings, *, as_json: bool, keep_stack: bool, timeout_s: float) -> int:
    started = time.perf_counter()
    stack = Stack(settings)
    was_running = {s.name for s in stack.status() if s.running}
    stack.up()
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "logs" / "demo-workers.log"
    log_file = log_path.open("a")
    configure_logging(settings, stream=log_file)
    supervisor: Supervisor | None = None
    try:
        ensure_topics(settings)
        supervisor = Supervisor(settings, worker_specs(settings, ["ingest", *AVAILABLE_OPERATIONS]))
        supervisor.start()
        samples = sample_set()
        with Client(settings) as client:
            subs = [client.submit(s.data, s.filename, PIPELINE, content_type=s.content_type) for s in samples]
            names = {sub.image_id: sample.filename for sub, sample in zip(subs, samples, strict=True)}
            finals = wait_with_progress(client, subs, names, timeout_s=timeout_s, show=not as_json)
            alpha = {
                o["key"]: encoded_has_transparency(client.store.get(o["bucket"], o["key"]))
                for final in finals.values()
                for o in final.event.get("outputs", [])
            }
    finally:
        if supervisor is not None:
            supervisor.stop.set()
            supervisor.join()
        log_file.close()
        if not keep_stack and not was_running:
            # Kafka clients caught in reference cycles would outlive the broker and print
            # librdkafka reconnect errors over the summary: collect them first.
            gc.collect()
            stack.down()  # stops only what this demo started; nothing if all is external
    rows = []
    for sub, sample in zip(subs, samples, strict=True):
        row = summarize(sub, finals.get(sub.image_id))
        row["source"] = sample.filename
        row["source_size"] = len(sample.data)
        row["pipeline"] = PIPELINE
        for output in row.get("outputs", []):
            output["alpha"] = alpha.get(output["key"], False)
        rows.append(row)
    ok = all(r["status"] == "completed" for r in rows)
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps({"ok": ok, "elapsed_s": round(elapsed, 2), "images": rows, "worker_log": str(log_path)}))
    else:
        _print_summary(rows, elapsed, log_path)
    return 0 if ok else 1


def _print_summary(rows: list[dict[str, Any]], elapsed: float, log_path: Any) -> None:
    out = Console()
    table = Table(title=f"darkroom demo — pipeline {PIPELINE!r}", show_lines=True)
    for column in ("image", "status", "outputs", "time per step"):
        table.add_column(column)
    for r in rows:
        if "error" in r:
            outputs = f"{r['error']['error_code']}: {r['error']['message']}"
        else:
            outputs = "\n".join(
                f"{o['name']}: {o['width']}×{o['height']} {o['content_type']} {o['size'] / 1024:.1f} KiB"
                + (" (alpha)" if o.get("alpha") else "")
                for o in r.get("outputs", [])
            )
        steps = "\n".join(f"{t['operation']} ({t['backend']}): {t['duration_ms']:.0f} ms" for t in r.get("timings", []))
        table.add_row(
            f"{r['source']}\n{r['source_size'] / 1024:.0f} KiB\nid {r['image_id']}", r["status"], outputs, steps
        )
    out.print(table)
    done = sum(r["status"] == "completed" for r in rows)
    out.print(f"{done}/{len(rows)} images completed in {elapsed:.1f}s · worker log: {log_path}")
