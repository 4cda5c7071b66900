from __future__ import annotations

import pytest

from processors import registry
from processors.errors import InvalidParameters, InvalidPipeline, OperationUnavailable, UnknownOperation
from streams.wire.pipeline import PRESETS, format_spec, parse_spec, resolve, validate


def test_steps_and_parameters_are_split_by_commas() -> None:
    assert parse_spec("upscale:scale=2,thumbnail:sizes=256+1024,format=webp") == [
        {"operation": "upscale", "params": {"scale": "2"}},
        {"operation": "thumbnail", "params": {"sizes": "256+1024", "format": "webp"}},
    ]


def test_bare_operation_and_preset() -> None:
    assert parse_spec("thumbnail") == [{"operation": "thumbnail", "params": {}}]
    assert parse_spec("web") == parse_spec(PRESETS["web"])


@pytest.mark.parametrize("spec", ["", " , ", "sizes=256", "thumbnail:sizes", "thumbnail:q=1,q=2"])
def test_malformed_specs_are_typed_errors(spec: str) -> None:
    with pytest.raises(InvalidPipeline):
        parse_spec(spec)


def test_validation_names_the_failing_step(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownOperation) as info:
        validate(parse_spec("thumbnail,sharpen:amount=3"))
    assert (info.value.step_index, info.value.step) == (1, "sharpen")
    monkeypatch.setattr(registry, "_PLANNED", frozenset({"vectorize"}))  # a contract name not built yet
    with pytest.raises(OperationUnavailable) as unavailable:
        validate(parse_spec("thumbnail,vectorize"))
    assert unavailable.value.step_index == 1
    with pytest.raises(InvalidParameters):
        validate(parse_spec("thumbnail:bogus=1"))


def test_resolve_prefers_the_explicit_pipeline_then_the_preset() -> None:
    explicit = [{"operation": "thumbnail", "params": {"sizes": "64"}}]
    assert resolve(explicit, "web") == explicit
    assert resolve([], "web") == parse_spec("web")
    with pytest.raises(InvalidPipeline, match="unknown preset"):
        resolve([], "nope")
    with pytest.raises(InvalidPipeline):
        resolve([], None)


def test_every_preset_is_valid() -> None:
    for name in PRESETS:
        validate(parse_spec(name))


@pytest.mark.parametrize(
    "spec",
    ["thumbnail", "upscale:scale=2,thumbnail:sizes=256+1024,format=webp", "enhance,thumbnail:sizes=64", *PRESETS],
)
def test_format_spec_is_what_parse_spec_reads_back(spec: str) -> None:
    steps = parse_spec(spec)
    assert parse_spec(format_spec(steps)) == steps
