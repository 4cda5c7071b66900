"""Thumbnails/s through the whole pipeline with one thumbnail process vs. two.

    .venv/bin/python benchmarks/scale.py [--images 80] [--rounds 3] [--sizes 256+512+1024]

On one throwaway embedded stack (own home, free ports; the broker and the object store
share the machine with the workers, as they do on a small host), it runs ``darkroom run
--processes ingest=1,thumbnail=N,enhance=0,upscale=0,results=0,webhooks=0`` as a
subprocess, for N = 1 and N = 2, and pushes the same burst of 12-megapixel JPEGs
(``--distinct`` photos, cycled) through ingest → thumbnail (3 sizes) → completed.

Each run gets a topic prefix of its own (fresh topics and consumer groups, and fresh
image ids, so no run reuses another's stored outputs) and is judged ready when the
supervisor's ``/readyz`` answers 200 (every child joined its group). It then warms up:
two images per thumbnail process go through first, not timed, so process start-up,
imports and the first fetch do not weigh on the figure (an image's id picks its
partition, so a warm-up image may miss a process). The measured images are uploaded to
the object store before the clock starts, as in ``benchmarks/pipeline.py``: the figure is the pipeline's,
not the uploading client's, which would otherwise compete for the same two cores. Then
every upload event is emitted at once and the clock runs from the first emit to the last
completion event seen. Latency is completed_at − submitted_at of each image's
completion event, so it includes queueing in the burst. The run ends with SIGTERM.

The sides alternate (1, 2, 1, 2, … for ``--rounds``) because a shared machine drifts
(page cache, the object store's compaction, other tenants): alternating spreads a drift
over both sides instead of charging it to whichever ran last. Throughput is the median
over the rounds of each side (three by default: the median of two is their mean, and one
slow round moves it), and ``ratio`` divides the two medians; the per-round figures and
ratios are printed too. Latency percentiles are over every image of a side's rounds.

``--processes`` is given on both sides, so both run under the supervisor, ingest and each
thumbnail worker as ``darkroom worker`` children: the sides differ only in the number of
thumbnail processes. Each side's
``thumbnail_loops`` lists what ``/readyz`` reported for its thumbnail workers (pid,
partitions), and ``consumed`` is ``darkroom_records_consumed_total`` of the thumbnail
group from ``/metrics`` at the end of each run (warm-up + measured images expected).
``cpu_s`` splits the CPU seconds the machine spent in each timed window into this
benchmark's (itself, the stack, ``darkroom run`` and its children) and everything else's,
plus what the hypervisor stole: a round that other tenants slowed shows there.

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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from processors import get_operation
from streams.client import Client, FinalEvent, Submission
from streams.config import Settings, load_settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import Stack, throwaway_settings
from streams.runtime.logs import configure_logging
from streams.runtime.topics import ensure_topics, step_topic

ROOT = Path(__file__).resolve().parent.parent
SIDES = (1, 2)
WARMUP_PER_PROCESS = 2
READY_TIMEOUT_S = 120.0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu() -> tuple[float, float, float]:
    """CPU seconds so far: (busy on the whole machine, of this process and its descendants
    alive now — the stack, ``darkroom run`` and its children —, stolen by the hypervisor)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(stat[1])
        ticks[int(entry.name)] = int(stat[11]) + int(stat[12])  # utime + stime
    ours = 0
    for pid, own in ticks.items():
        ancestor = pid
        while ancestor > 1 and ancestor != os.getpid():
            ancestor = parents.get(ancestor, 0)
        if ancestor == os.getpid():
            ours += own
    return (user + nice + system + irq + softirq) / _TICK, ours / _TICK, steal / _TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> list[dict[str, Any]]:
    """The loops ``/readyz`` reports once it answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    body = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"darkroom run exited with {proc.returncode} before ready: {_tail(log)}")
        try:
            status, body = _get(port, "/readyz")
        except OSError:
            status = 0
        if status == 200:
            loops: list[dict[str, Any]] = json.loads(body)["loops"]
            return loops
        time.sleep(0.2)
    raise SystemExit(f"darkroom run not ready within {READY_TIMEOUT_S:.0f}s; last /readyz: {body[:600]}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:].strip() if log.exists() else ""


def _consumed(port: int, group: str, topic: str) -> float | None:
    """``darkroom_records_consumed_total`` of ``group`` on ``topic`` as ``/metrics`` sums it."""
    try:
        status, text = _get(port, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "darkroom_records_consumed_total"
        and sample.labels.get("group") == group
        and sample.labels.get("topic") == topic
    )


def _stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM and wait; seconds it took (killed after 60 s)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        say("  darkroom run did not stop within 60 s of SIGTERM; killing it")
        proc.kill()
        proc.wait()
    return time.monotonic() - started


def run_side(
    base: Settings, round_no: int, processes: int, inputs: list[bytes], spec: str, sizes: int
) -> dict[str, Any]:
    """One run of ``darkroom run`` with ``processes`` thumbnail processes over the burst."""
    prefix = f"scale{round_no}p{processes}."
    settings = base.replace(topic_prefix=prefix)
    ensure_topics(settings)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        **settings.to_env(),
        "DARKROOM_METRICS_PORT": str(port),
        "DARKROOM_LOG_LEVEL": "warning",
    }
    counts = f"ingest=1,thumbnail={processes},enhance=0,upscale=0,results=0,webhooks=0"
    log = settings.home / "logs" / f"run-{round_no}-{processes}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--processes", counts],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        started = time.monotonic()
        loops = _wait_ready(port, proc, log)
        thumbnail_loops = [
            {"pid": loop.get("pid"), "partitions": loop.get("partitions")}
            for loop in loops
            if loop.get("name") == "thumbnail"
        ]
        say(f"  ready in {time.monotonic() - started:.1f}s; thumbnail loops {thumbnail_loops}")
        with Client(settings) as client:
            warm = [
                client.submit(inputs[i % len(inputs)], f"warm{i}.jpg", spec, image_id=f"{prefix}warm{i}")
                for i in range(WARMUP_PER_PROCESS * processes)
            ]
            warmed = client.wait(warm, timeout_s=300)
            if len(warmed) < len(warm) or any(f.status != "completed" for f in warmed.values()):
                raise SystemExit(f"warm-up did not complete: {warmed}; {_tail(log)}")
            keys = []
            for i, data in enumerate(inputs):
                key = f"bench/{prefix}{i}.jpg"
                client.store.put(settings.bucket, key, data, content_type="image/jpeg")
                keys.append(key)
            seen: list[float] = []

            def on_final(_sub: Submission, _final: FinalEvent) -> None:
                seen.append(time.perf_counter())

            clock, cpu_before = time.perf_counter(), _cpu()
            subs = [client.emit(key, spec, image_id=f"{prefix}img{i}") for i, key in enumerate(keys)]
            emitted_s = time.perf_counter() - clock
            finals = client.wait(subs, timeout_s=900, on_final=on_final)
            cpu_after = _cpu()
        elapsed = max(seen) - clock if seen else float("nan")
        busy_s, ours_s, steal_s = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
        consumed = _consumed(port, settings.topic("darkroom.thumbnail"), settings.topic(step_topic("thumbnail")))
        exited_early = proc.poll()
    finally:
        stop_s = _stop(proc)
    completed = [f.event for f in finals.values() if f.status == "completed"]
    if len(completed) < len(inputs):
        raise SystemExit(f"{len(inputs) - len(completed)} of {len(inputs)} images did not complete: {_tail(log)}")
    ips = len(completed) / elapsed
    reused = sum(1 for e in completed for t in e["timings"] if t["reused"])
    say(
        f"  {processes} process(es): {ips * sizes:.2f} thumbnails/s ({elapsed:.1f}s; emits took {emitted_s:.1f}s),"
        f" consumed {consumed}, stopped in {stop_s:.1f}s; CPU s: ours {ours_s:.1f}, others {busy_s - ours_s:.1f},"
        f" stolen {steal_s:.1f}"
    )
    return {
        "processes": processes,
        "seconds": elapsed,
        "thumbnails_per_s": ips * sizes,
        "latencies": [(e["completed_at"] - e["submitted_at"]).total_seconds() for e in completed],
        "reused": reused,
        "thumbnail_loops": thumbnail_loops,
        "consumed": consumed,
        "expected_consumed": len(warm) + len(inputs),
        "exited_early": exited_early,
        "cpu_s": {"ours": round(ours_s, 1), "others": round(busy_s - ours_s, 1), "stolen": round(steal_s, 1)},
        "stop_s": stop_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    # 80 images: ~12-14 s of work for one process here; with fewer, the fixed start and end
    # of the burst (emits, first fetch, last completion noticed) weigh on the figure
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--distinct", type=int, default=6, help="distinct source photos, cycled")
    parser.add_argument("--sizes", default="256+512+1024")
    args = parser.parse_args()
    spec = f"thumbnail:sizes={args.sizes},format=jpeg"
    sizes = len(get_operation("thumbnail").parse_params({"sizes": args.sizes, "format": "jpeg"}).sizes)

    say(f"generating {args.distinct} distinct 4000x3000 JPEGs…")
    photos = [photo_jpeg(4000, 3000, seed=100 + i) for i in range(args.distinct)]
    inputs = [photos[i % len(photos)] for i in range(args.images)]

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="darkroom-scale-") as home:
        settings = throwaway_settings(load_settings(log_format="json", log_level="warning"), Path(home))
        log = (Path(home) / "bench.log").open("w")
        configure_logging(settings, stream=log)
        stack = Stack(settings)
        stack.up()
        try:
            for round_no in range(args.rounds):
                for processes in SIDES:
                    say(f"round {round_no + 1}/{args.rounds}, {processes} thumbnail process(es)…")
                    runs.append(run_side(settings, round_no, processes, inputs, spec, sizes))
        finally:
            stack.down()
            log.close()

    def side(processes: int, key: str) -> list[Any]:
        return [r[key] for r in runs if r["processes"] == processes]

    rates = {p: statistics.median(side(p, "thumbnails_per_s")) for p in SIDES}
    latencies = {p: [x for xs in side(p, "latencies") for x in xs] for p in SIDES}
    one, two = SIDES
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "images": args.images,
                "source": "4000x3000 JPEG q90",
                "sizes": args.sizes,
                "rounds": args.rounds,
                "cpus": len(os.sched_getaffinity(0)),
                "processes": list(SIDES),
                "thumbnails_per_s": {str(p): round(rates[p], 2) for p in SIDES},
                "ratio": round(rates[two] / rates[one], 3),
                "latency_p50_s": {str(p): round(statistics.median(latencies[p]), 2) for p in SIDES},
                "latency_p95_s": {str(p): round(_percentile(latencies[p], 0.95), 2) for p in SIDES},
                "rounds_thumbnails_per_s": {str(p): [round(x, 2) for x in side(p, "thumbnails_per_s")] for p in SIDES},
                "rounds_seconds": {str(p): [round(x, 2) for x in side(p, "seconds")] for p in SIDES},
                "round_ratios": [
                    round(b / a, 3)
                    for a, b in zip(side(one, "thumbnails_per_s"), side(two, "thumbnails_per_s"), strict=True)
                ],
                "reused": sum(r["reused"] for r in runs),
                "cpu_s": {str(p): side(p, "cpu_s") for p in SIDES},
                "thumbnail_loops": {str(p): side(p, "thumbnail_loops") for p in SIDES},
                "consumed": {str(p): side(p, "consumed") for p in SIDES},
                "expected_consumed": {str(p): side(p, "expected_consumed") for p in SIDES},
            }
        )
    )


if __name__ == "__main__":
    main()
