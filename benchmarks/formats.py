"""What ``format=auto`` changed: the demo pipeline and the ``web`` preset, before and after.

Before ``auto`` every operation wrote JPEG unless told otherwise, so the demo's
``enhance,thumbnail:…,format=webp`` flattened the logo's transparency in its first step.
This runs the same chains in process (the operations themselves: the pipeline's Kafka and
S3 costs are ``benchmarks/pipeline.py``'s subject) over the demo's six sample images,
once with the old default spelled out (``enhance:format=jpeg``) and once as the pipelines
are written today, and reports per chain: output bytes, seconds, and how many final
outputs kept transparency. ``web`` names its format, so auto must change nothing there.

    .venv/bin/python benchmarks/formats.py [--rounds 3]

Prints one JSON line; seconds are the best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from processors import Limits, get_operation
from processors.image import encoded_has_transparency
from streams.dev.demo import PIPELINE as DEMO
from streams.dev.samples import sample_set
from streams.wire.pipeline import parse_spec


def _chain(spec: str, data: bytes) -> tuple[list[bytes], bytes]:
    """Every output of the chain, and the first output of its last step (what a user keeps)."""
    outputs: list[bytes] = []
    for step in parse_spec(spec):
        op = get_operation(step["operation"])
        renditions = op.run(data, op.parse_params(step["params"]), Limits()).renditions
        outputs += [r.data for r in renditions]
        data = renditions[0].data
    return outputs, data


def measure(spec: str, rounds: int) -> dict[str, Any]:
    samples = sample_set()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        results = [_chain(spec, s.data) for s in samples]
        best = min(best, time.perf_counter() - started)
    alpha_sources = sum(encoded_has_transparency(s.data) for s in samples)
    return {
        "spec": spec,
        "seconds": round(best, 3),
        "output_bytes": sum(len(o) for outputs, _ in results for o in outputs),
        "final_with_alpha": sum(encoded_has_transparency(final) for _, final in results),
        "sources_with_alpha": alpha_sources,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before_demo = DEMO.replace("enhance,", "enhance:format=jpeg,", 1)
    rows = {
        "demo_before": measure(before_demo, args.rounds),
        "demo_after": measure(DEMO, args.rounds),
        "web_before": measure("thumbnail:sizes=256+1024,format=webp,quality=80", args.rounds),
        "web_after": measure("web", args.rounds),
    }
    rows["demo_bytes_ratio"] = round(rows["demo_after"]["output_bytes"] / rows["demo_before"]["output_bytes"], 3)
    rows["demo_seconds_ratio"] = round(rows["demo_after"]["seconds"] / rows["demo_before"]["seconds"], 3)
    rows["web_bytes_ratio"] = round(rows["web_after"]["output_bytes"] / rows["web_before"]["output_bytes"], 3)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
