"""``darkroom submit`` (upload and emit, optionally wait) and ``darkroom process`` (local files, no Kafka)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from processors.errors import ConfigurationError, FileTooLarge, InvalidParameters
from streams.cli.common import EXIT_FAILED, print_json
from streams.config import Settings
from streams.errors import LocalFileError
from streams.wire import pipeline as pipelines
from streams.wire.events import check_tenant


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("submit", help="upload files and emit their upload events")
    p.add_argument("files", nargs="+")
    p.add_argument("--pipeline", required=True, help="e.g. 'thumbnail:sizes=256+1024,format=webp' or a preset")
    p.add_argument(
        "--callback", help="webhook URL for this upload (http/https, public; needs DARKROOM_WEBHOOK_SECRETS to sign)"
    )
    p.add_argument("--tenant")
    p.add_argument("--wait", action="store_true", help="follow each image to its final event")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "process",
        help="run one operation on a local file (no Kafka, no S3)",
        description="Run one operation on a local file. An output file's extension (.jpg, .jpeg, .png, .webp,"
        " .avif) picks the format; format= may repeat it but not contradict it. Several outputs (thumbnail"
        " sizes=256+1024) go into an existing directory given as OUTPUT, or into --output-dir DIR (created),"
        " named after each output, in the spec's format (default auto: PNG with transparency, else JPEG).",
    )
    p.add_argument("spec", help="e.g. 'thumbnail:sizes=256,format=webp'")
    p.add_argument("input")
    p.add_argument("output", nargs="?", help="output file, or an existing directory")
    p.add_argument("--output-dir", metavar="DIR", help="write every output into DIR (created if missing)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_process)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.client import Client, summarize

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InvalidParameters(f"no such file: {', '.join(missing)}")
    steps = pipelines.parse_spec(args.pipeline)
    pipelines.validate(steps)  # before touching storage: a typo is the user's error, not an outage
    check_tenant(args.tenant)
    if args.callback and not settings.webhook_secrets:
        raise ConfigurationError("--callback needs DARKROOM_WEBHOOK_SECRETS to sign its webhooks")
    client = Client(settings)
    subs = [client.submit_file(p, steps, callback_url=args.callback, tenant=args.tenant) for p in paths]
    if not args.wait:
        rows: list[dict[str, Any]] = [{"image_id": s.image_id, "event_id": s.event_id, "key": s.key} for s in subs]
        if args.json:
            print_json({"submitted": rows})
        else:
            for r in rows:
                print(f"submitted {r['image_id']} (event {r['event_id']}) s3://{settings.bucket}/{r['key']}")
        return 0
    from streams.dev.progress import wait_with_progress

    labels = {s.image_id: p.name for s, p in zip(subs, paths, strict=True)}
    finals = wait_with_progress(client, subs, labels, timeout_s=args.timeout, show=sys.stderr.isatty())
    rows = [summarize(s, finals.get(s.image_id)) for s in subs]
    if args.json:
        print_json({"images": rows})
    else:
        for r in rows:
            _print_row_text(r)
    return 0 if all(r["status"] == "completed" for r in rows) else EXIT_FAILED


def _print_row_text(row: dict[str, Any]) -> None:
    print(f"{row['image_id']}: {row['status']}")
    for o in row.get("outputs", []):
        print(f"  {o['name']:<18} {o['width']}x{o['height']:<6} {o['size']:>9,} B  {o['key']}")
    if "error" in row:
        print(f"  {row['error']['error_code']}: {row['error']['message']}")


_EXTENSIONS = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp", "avif": "avif"}
"""Output file extensions ``process`` writes, and the format each names."""


def _format_of(output: Path, given: str | None) -> str:
    """The format an output file's extension names; its absence, an unknown one or one that
    contradicts ``format=`` is the user's mistake, said before any work."""
    ext = output.suffix.lstrip(".").lower()
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        known = ", ".join(f".{e}" for e in _EXTENSIONS)
        what = f"extension .{ext}" if ext else "no extension"
        raise InvalidParameters(
            f"{output} has {what}; an output file needs one of {known} (or give a directory, or --output-dir)"
        )
    if given not in (None, "auto") and _EXTENSIONS.get(given, given) != fmt:
        raise InvalidParameters(f"format={given} contradicts the output file's extension .{ext}")
    return fmt


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise LocalFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    steps = pipelines.parse_spec(args.spec)
    if len(steps) != 1:
        raise InvalidParameters("`process` runs exactly one operation; use `submit` for pipelines")
    step = steps[0]
    from streams.handlers.steps import operation_for

    op = operation_for(settings, step["operation"])
    if (args.output is None) == (args.output_dir is None):
        raise InvalidParameters("give an output file or directory, or --output-dir DIR (not both)")
    directory = Path(args.output_dir) if args.output_dir else Path(args.output)
    into_directory = args.output_dir is not None or directory.is_dir()
    if not into_directory:
        step["params"]["format"] = _format_of(directory, step["params"].get("format"))
    params = op.parse_params(step["params"])
    source = Path(args.input)
    if not source.is_file():
        raise InvalidParameters(f"no such file: {source}")
    if source.stat().st_size > settings.max_file_bytes:
        raise FileTooLarge(f"{source} is over the {settings.max_file_bytes}-byte limit")
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise LocalFileError(f"cannot read {source}: {exc.strerror or exc}") from None
    started = time.perf_counter()
    result = op.run(data, params, settings.limits)
    renditions = result.renditions
    elapsed_ms = (time.perf_counter() - started) * 1000
    if not into_directory and len(renditions) > 1:
        raise InvalidParameters(
            f"{op.name} made {len(renditions)} outputs: give an existing directory or --output-dir DIR, not a file"
        )
    if into_directory:
        written = [(directory / f"{r.name}.{r.extension}", r) for r in renditions]
    else:
        written = [(directory, renditions[0])]
    for path, r in written:
        _write(path, r.data)
    rows = [
        {"path": str(p), "width": r.width, "height": r.height, "size": len(r.data), "content_type": r.content_type}
        for p, r in written
    ]
    if "prepared" in result.details:
        print(f"darkroom: note: {op.name} weights {result.details['prepared']}", file=sys.stderr)
    if "fallback" in result.details:  # the output is not what the operation would normally make: say so
        print(f"darkroom: note: {op.name} fell back to {result.backend}: {result.details['fallback']}", file=sys.stderr)
    if args.json:
        print_json(
            {
                "operation": op.name,
                "backend": result.backend,
                "details": dict(result.details),
                "outputs": rows,
                "ms": round(elapsed_ms, 1),
            }
        )
    else:
        for row in rows:
            print(f"{row['path']}: {row['width']}x{row['height']} {row['size']:,} B")
        details = ", ".join(f"{k}={v}" for k, v in result.details.items())
        print(f"{op.name} ({result.backend}) took {elapsed_ms:.0f} ms{'; ' + details if details else ''}")
    return 0
