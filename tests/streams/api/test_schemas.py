"""The request models carry the API's bounds, and write the document's schemas for the bodies routes read themselves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.api.limits import MAX_FILENAME, MAX_NAME, MAX_TEXT, MAX_VALUE, NO_CONTROL
from streams.api.schemas import CreateImage, Reprocess, Step, UploadFields, components, form_fields, ref
from streams.wire.pipeline import MAX_STEPS


def test_a_direct_upload_has_the_json_fields_with_the_pipeline_as_text() -> None:
    assert list(UploadFields.model_fields) == list(CreateImage.model_fields)
    assert UploadFields.model_validate({"pipeline": "thumbnail", "colour": "red"}).pipeline == "thumbnail"
    with pytest.raises(ValidationError):
        UploadFields.model_validate({"pipeline": [{"operation": "thumbnail"}]})
    with pytest.raises(ValidationError):
        CreateImage.model_validate({"preset": "web", "colour": "red"})
    assert CreateImage.model_validate({"pipeline": [{"operation": "thumbnail"}]}).pipeline == [
        Step(operation="thumbnail")
    ]


def test_the_multipart_fields_are_text_with_the_models_bounds() -> None:
    text = {"type": "string", "pattern": NO_CONTROL}
    assert form_fields(UploadFields) == {
        "pipeline": {**text, "maxLength": MAX_TEXT},
        "preset": {**text, "maxLength": MAX_NAME},
        "callback_url": {**text, "maxLength": MAX_TEXT},
        "filename": {**text, "maxLength": MAX_FILENAME},
    }


def test_components_hold_the_models_and_what_they_use() -> None:
    found = components(CreateImage, Reprocess)
    assert set(found) == {"CreateImage", "Reprocess", "Step"}
    step = found["Step"]
    assert step["properties"]["operation"]["maxLength"] == MAX_NAME
    assert step["properties"]["params"]["propertyNames"] == {"maxLength": MAX_NAME}
    assert step["properties"]["params"]["patternProperties"][NO_CONTROL]["maxLength"] == MAX_VALUE
    (steps,) = (s for s in found["CreateImage"]["properties"]["pipeline"]["anyOf"] if s.get("type") == "array")
    assert steps == {"type": "array", "items": ref(Step), "maxItems": MAX_STEPS}


def test_a_parameter_is_bounded_like_every_other_text() -> None:
    with pytest.raises(ValidationError):
        Step.model_validate({"operation": "thumbnail", "params": {"format": "webp\n"}})
    with pytest.raises(ValidationError):
        Step.model_validate({"operation": "thumbnail", "params": {"format": "w" * (MAX_VALUE + 1)}})
