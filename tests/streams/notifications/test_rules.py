"""Notification rules: parsed and checked when the worker starts (pure: no broker, no S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.errors import ConfigurationError
from streams.config import Settings, load_settings
from streams.notifications import rules


def _settings(raw: str, **overrides: str) -> Settings:
    return load_settings(environ={}, notification_rules=raw, allowed_buckets="darkroom,photos", **overrides)


RULES = [
    {"bucket": "darkroom", "prefix": "uploads/catalog/", "preset": "catalog", "tenant": "shop"},
    {
        "bucket": "darkroom",
        "prefix": "uploads/",
        "suffix": ".jpg",
        "pipeline": "enhance,thumbnail:sizes=256",
        "callback_url": "https://hooks.example.com/in?token=s3cret",
    },
    {"bucket": "photos", "pipeline": "web"},
]


def test_inline_rules_load_and_the_first_that_matches_wins() -> None:
    loaded = rules.load(_settings(json.dumps(RULES)))
    assert len(loaded) == 3
    catalog = rules.match(loaded, "darkroom", "uploads/catalog/shoe.jpg")
    assert catalog is loaded[0] and catalog.preset == "catalog" and catalog.steps == () and catalog.tenant == "shop"
    jpeg = rules.match(loaded, "darkroom", "uploads/x/shoe.jpg")
    assert jpeg is loaded[1]
    assert [s["operation"] for s in jpeg.steps] == ["enhance", "thumbnail"] and jpeg.preset is None
    assert jpeg.callback_url == "https://hooks.example.com/in?token=s3cret"
    assert "s3cret" not in repr(jpeg)
    assert rules.match(loaded, "darkroom", "uploads/x/shoe.png") is None  # suffix
    assert rules.match(loaded, "darkroom", "elsewhere/shoe.jpg") is None  # prefix
    assert rules.match(loaded, "photos", "any/key at all.heic") is loaded[2]
    assert rules.match(loaded, "other", "uploads/x.jpg") is None


def test_rules_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES[2:]))
    (rule,) = rules.load(_settings(f"  {path}  "))
    assert rule.bucket == "photos" and [s["operation"] for s in rule.steps] == ["thumbnail"]


def test_every_problem_of_every_rule_is_reported_at_once() -> None:
    """The rules' shape is checked with the settings, what they mean when the worker
    starts; each stage lists every problem of every rule in one error."""
    malformed = [
        {"bucket": "darkroom", "prefx": "uploads/", "preset": "web"},
        {"prefix": "uploads/", "preset": "web"},
        {"bucket": "darkroom", "preset": "web", "tenant": 7},
        "darkroom",
        {"bucket": "darkroom", "preset": "web", "callback_url": "http://127.0.0.1:8080/hook?token=s3cret"},
    ]
    with pytest.raises(ConfigurationError) as caught:
        _settings(json.dumps(malformed))
    message = caught.value.message
    for part in [
        "rule 1: unknown key 'prefx'",
        "rule 2: bucket is required",
        "rule 3: tenant must be a string",
        "rule 4: expected a JSON object",
    ]:
        assert f"DARKROOM_NOTIFICATION_RULES: {part}" in message, (part, message)
    assert "rule 5" not in message and "s3cret" not in message
    meaningless = [
        {"bucket": "elsewhere", "preset": "web"},
        {"bucket": "darkroom", "pipeline": "thumbnail", "preset": "web"},
        {"bucket": "darkroom"},
        {"bucket": "darkroom", "pipeline": "sharpen:amount=2"},
        {"bucket": "darkroom", "pipeline": "thumbnail:sizes=0"},
        {"bucket": "darkroom", "preset": "huge"},
        {"bucket": "darkroom", "preset": "web", "callback_url": "http://127.0.0.1:8080/hook?token=s3cret"},
        {"bucket": "darkroom", "preset": "web", "callback_url": "ftp://hooks.example.com/"},
        {"bucket": "darkroom", "prefix": "derived/x/", "preset": "web"},
        {"bucket": "darkroom", "preset": "web", "tenant": "acme corp"},
        {"bucket": "darkroom", "preset": "web", "tenant": "../acme"},
    ]
    with pytest.raises(ConfigurationError) as caught:
        rules.load(_settings(json.dumps(meaningless)))
    message = caught.value.message
    expected = [
        "rule 1: bucket 'elsewhere' is not in DARKROOM_ALLOWED_BUCKETS",
        "rule 2: name exactly one of pipeline or preset",
        "rule 3: name exactly one of pipeline or preset",
        "rule 4: pipeline: unknown_operation",
        "rule 5: pipeline: invalid_parameters",
        "rule 6: preset: invalid_pipeline: unknown preset 'huge'",
        "rule 7: callback_url http://127.0.0.1:8080/hook?token=***: webhook_target_blocked",
        "rule 8: callback_url ftp://hooks.example.com/: invalid_webhook_url",
        "rule 9: prefix 'derived/x/' is under the output prefix 'derived/'",
        "rule 10: tenant 'acme corp': invalid_tenant",
        "rule 11: tenant '../acme': invalid_tenant",
    ]
    for part in expected:
        assert part in message, (part, message)
    assert "s3cret" not in message


def test_allowed_networks_admit_a_private_callback() -> None:
    raw = json.dumps([{"bucket": "darkroom", "preset": "web", "callback_url": "http://127.0.0.1:8080/hook"}])
    (rule,) = rules.load(_settings(raw, webhook_allow_networks="127.0.0.1/32"))
    assert rule.callback_url == "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "DARKROOM_NOTIFICATION_RULES is empty"),
        ("[", "not JSON"),
        ("[]", "non-empty JSON list"),
        ("/nonexistent/rules.json", "cannot read /nonexistent/rules.json"),
    ],
)
def test_missing_or_malformed_rules_stop_the_worker(raw: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        rules.load(_settings(raw))
