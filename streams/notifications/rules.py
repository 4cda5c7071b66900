"""Notification rules: which stored objects become uploads, with what pipeline, for whom.

``DARKROOM_NOTIFICATION_RULES`` is a JSON list (inline when it starts with ``[``, else the
path of a file holding it) of objects::

    {"bucket": "darkroom", "prefix": "uploads/", "suffix": ".jpg",
     "pipeline": "thumbnail:sizes=256", "tenant": "acme", "callback_url": "https://…"}

``bucket`` and one of ``pipeline`` (a spec) or ``preset`` are required; ``prefix`` and
``suffix`` default to empty (any key). An object takes the first rule that matches.
Everything an upload would be refused for is checked here, when the worker starts, so a
bad rule stops the worker with every problem listed instead of failing images one by one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.errors import ConfigurationError, DarkroomError
from streams.config import PREFIX, Settings, mask_url
from streams.runtime.egress import EgressGuard
from streams.wire import pipeline as pipelines

_SETTING = f"{PREFIX}NOTIFICATION_RULES"
_KEYS = frozenset({"bucket", "prefix", "suffix", "pipeline", "preset", "tenant", "callback_url"})


@dataclass(frozen=True)
class Rule:
    bucket: str
    prefix: str = ""
    suffix: str = ""
    steps: tuple[pipelines.Step, ...] = ()
    """The pipeline's steps; empty when the rule names a preset."""
    preset: str | None = None
    tenant: str | None = None
    callback_url: str | None = field(default=None, repr=False)  # may carry a token

    def matches(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix)


def match(rules: Sequence[Rule], bucket: str, key: str) -> Rule | None:
    """The first rule that takes ``bucket``/``key``, if any."""
    return next((rule for rule in rules if rule.matches(bucket, key)), None)


def load(settings: Settings) -> tuple[Rule, ...]:
    """The rules of ``settings.notification_rules`` (inline JSON or a file), checked."""
    raw = settings.notification_rules.strip()
    if not raw:
        raise ConfigurationError(f"{_SETTING} is empty: name the buckets and keys that become uploads")
    if raw.startswith("["):
        return parse(raw, settings)
    try:
        text = Path(raw).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{_SETTING}: cannot read {raw}: {exc.__class__.__name__}") from None
    return parse(text, settings, source=raw)


def parse(text: str, settings: Settings, *, source: str = "") -> tuple[Rule, ...]:
    """Rules from JSON text; one ``ConfigurationError`` naming every problem of every rule."""
    where = f"{_SETTING} ({source})" if source else _SETTING
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, list) or not doc:
        raise ConfigurationError(f"{where}: expected a non-empty JSON list of rules")
    guard = EgressGuard.from_settings(settings)
    rules: list[Rule] = []
    problems: list[str] = []
    for index, item in enumerate(doc, 1):
        found: list[str] = []
        rule = _rule(item, settings, guard, found)
        problems.extend(f"rule {index}: {problem}" for problem in found)
        if rule is not None and not found:
            rules.append(rule)
    if problems:
        raise ConfigurationError(f"invalid {where}: " + "; ".join(problems))
    return tuple(rules)


def _rule(item: Any, settings: Settings, guard: EgressGuard, problems: list[str]) -> Rule | None:
    """One rule, appending what is wrong with it to ``problems``."""
    if not isinstance(item, dict):
        problems.append("expected a JSON object")
        return None
    problems.extend(f"unknown key {key!r}" for key in sorted(set(item) - _KEYS))
    for key in sorted(set(item) & _KEYS):
        if not isinstance(item[key], str) and not (item[key] is None and key in {"tenant", "callback_url"}):
            problems.append(f"{key} must be a string")
    if problems:
        return None
    bucket, prefix, suffix = item.get("bucket", ""), item.get("prefix", ""), item.get("suffix", "")
    if not bucket:
        problems.append("bucket is required")
    elif bucket not in settings.buckets_allowed:
        problems.append(f"bucket {bucket!r} is not in {PREFIX}ALLOWED_BUCKETS")
    output = settings.output_prefix.strip("/") + "/"
    if prefix.startswith(output):
        problems.append(f"prefix {prefix!r} is under the output prefix {output!r}: darkroom's outputs start no work")
    steps = _steps(item.get("pipeline"), item.get("preset"), problems)
    callback_url = item.get("callback_url") or None
    if callback_url is not None:
        try:
            guard.admit(callback_url, resolve=False)
        except DarkroomError as exc:
            problems.append(f"callback_url {mask_url(callback_url)}: {exc.code}: {exc.message}")
    return Rule(
        bucket=bucket,
        prefix=prefix,
        suffix=suffix,
        steps=tuple(steps),
        preset=item.get("preset"),
        tenant=item.get("tenant") or None,
        callback_url=callback_url,
    )


def _steps(spec: str | None, preset: str | None, problems: list[str]) -> list[pipelines.Step]:
    """The steps of ``pipeline`` (``[]`` for a preset), validated as ingest will."""
    if (spec is None) == (preset is None):
        problems.append("name exactly one of pipeline or preset")
        return []
    try:
        steps = pipelines.parse_spec(spec) if spec is not None else []
        pipelines.validate(steps or pipelines.resolve([], preset))
    except DarkroomError as exc:
        problems.append(f"{'pipeline' if spec is not None else 'preset'}: {exc.code}: {exc.message}")
        return []
    return steps
