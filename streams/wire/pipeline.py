"""Pipeline specs: ``op[:k=v],k=v,op2[:k=v]…`` strings, presets, and up-front validation.

A comma separates tokens; a token that contains ``=`` but no ``:`` continues the
current step's parameters, any other token starts a new step. So
``upscale:scale=2,thumbnail:sizes=256+1024,format=webp`` is two steps. Validation parses
every step's params before any work starts, so an unknown operation or a bad parameter
fails the image at the first step, never in the middle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from processors import AVAILABLE_OPERATIONS, get_operation
from processors.errors import InvalidParameters, InvalidPipeline
from processors.registry import describe

Step = dict[str, Any]  # {"operation": str, "params": dict[str, str]} — the Avro Step record

PRESETS: Mapping[str, str] = {
    "web": "thumbnail:sizes=256+1024,format=webp,quality=80",
    "catalog": "thumbnail:sizes=200x200+800,fit=cover,format=jpeg,quality=85",
    "preview": "thumbnail:sizes=512,format=jpeg",
}
MAX_STEPS = 8


def parse_spec(spec: str) -> list[Step]:
    """Parse a spec string or a preset name into steps (syntax only, see ``validate``)."""
    spec = spec.strip()
    if spec in PRESETS:
        spec = PRESETS[spec]
    steps: list[Step] = []
    for token in filter(None, (t.strip() for t in spec.split(","))):
        if "=" in token and ":" not in token:
            if not steps:
                raise InvalidPipeline(f"pipeline spec {spec!r} starts with a parameter, not an operation")
            _add_param(steps[-1], token)
            continue
        name, _, first = token.partition(":")
        steps.append({"operation": name.strip(), "params": {}})
        if first:
            _add_param(steps[-1], first)
    if not steps:
        raise InvalidPipeline("empty pipeline: name at least one operation or a preset")
    return steps


def _add_param(step: Step, token: str) -> None:
    key, sep, value = token.partition("=")
    if not sep or not key.strip():
        raise InvalidParameters(f"{step['operation']}: expected key=value, got {token!r}")
    if key.strip() in step["params"]:
        raise InvalidParameters(f"{step['operation']}: parameter {key.strip()!r} given twice")
    step["params"][key.strip()] = value.strip()


def resolve(pipeline: Sequence[Step], preset: str | None) -> list[Step]:
    """The steps an upload event asks for: its explicit pipeline, else its preset."""
    if pipeline:
        return [{"operation": s["operation"], "params": dict(s["params"])} for s in pipeline]
    if preset:
        if preset not in PRESETS:
            raise InvalidPipeline(f"unknown preset {preset!r}; presets: {', '.join(sorted(PRESETS))}")
        return parse_spec(PRESETS[preset])
    raise InvalidPipeline("the upload event names neither a pipeline nor a preset")


def validate(steps: Sequence[Step]) -> None:
    """Raise the first step's error, with ``step_index`` set on it, if any step is invalid."""
    if len(steps) > MAX_STEPS:
        raise InvalidPipeline(f"a pipeline has at most {MAX_STEPS} steps, got {len(steps)}")
    for index, step in enumerate(steps):
        try:
            get_operation(step["operation"]).parse_params(step["params"])
        except InvalidPipeline as exc:
            exc.step_index = index
            exc.step = step["operation"]
            raise


def format_spec(steps: Sequence[Step]) -> str:
    """Steps as a spec string, the inverse of ``parse_spec``: what operators read and type."""
    return ",".join(
        step["operation"] + (":" + ",".join(f"{k}={v}" for k, v in step["params"].items()) if step["params"] else "")
        for step in steps
    )


def catalog() -> dict[str, Any]:
    """What a spec may say, read from the operations themselves: each parameter's default
    and what it accepts, and the presets (``darkroom operations``, ``GET /v1/operations``)."""
    return {
        "operations": [
            {"name": name, "version": get_operation(name).version, "parameters": describe(get_operation(name))}
            for name in AVAILABLE_OPERATIONS
        ],
        "presets": [{"name": name, "spec": spec, "steps": parse_spec(spec)} for name, spec in PRESETS.items()],
    }
