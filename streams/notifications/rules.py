"""Notification rules: which stored objects become uploads, with what pipeline, for whom.

``DARKROOM_NOTIFICATION_RULES`` is a JSON list (inline when it starts with ``[``, else the
path of a file holding it) of objects::

    {"bucket": "darkroom", "prefix": "uploads/", "suffix": ".jpg",
     "pipeline": "thumbnail:sizes=256", "tenant": "acme", "callback_url": "https://…"}

``bucket`` and one of ``pipeline`` (a spec) or ``preset`` are required; ``prefix`` and
``suffix`` default to empty (any key). An object takes the first rule that matches.
``streams.config`` reads the rules and checks their shape (``NotificationRule``); here,
when the worker starts, everything an upload would be refused for is checked, so a bad
rule stops the worker with every problem listed instead of failing images one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from processors.errors import ConfigurationError, DarkroomError
from streams.config import PREFIX, NotificationRule, Settings, mask_url
from streams.runtime.egress import EgressGuard
from streams.wire import pipeline as pipelines
from streams.wire.events import check_tenant

_SETTING = f"{PREFIX}NOTIFICATION_RULES"


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
    """The rules of ``settings.notification_rules``, checked against the rest of darkroom;
    one ``ConfigurationError`` naming every problem of every rule."""
    if not settings.notification_rules:
        raise ConfigurationError(f"{_SETTING} is empty: name the buckets and keys that become uploads")
    guard = EgressGuard.from_settings(settings)
    rules: list[Rule] = []
    problems: list[str] = []
    for index, given in enumerate(settings.notification_rules, 1):
        found: list[str] = []
        rule = _rule(given, settings, guard, found)
        problems.extend(f"rule {index}: {problem}" for problem in found)
        if not found:
            rules.append(rule)
    if problems:
        raise ConfigurationError(f"invalid {_SETTING}: " + "; ".join(problems))
    return tuple(rules)


def _rule(given: NotificationRule, settings: Settings, guard: EgressGuard, problems: list[str]) -> Rule:
    """One rule, appending what is wrong with it to ``problems``."""
    if given.bucket not in settings.buckets_allowed:
        problems.append(f"bucket {given.bucket!r} is not in {PREFIX}ALLOWED_BUCKETS")
    output = settings.output_prefix.strip("/") + "/"
    if given.prefix.startswith(output):
        problems.append(
            f"prefix {given.prefix!r} is under the output prefix {output!r}: darkroom's outputs start no work"
        )
    steps = _steps(given.pipeline, given.preset, problems)
    tenant = given.tenant or None
    try:
        check_tenant(tenant)
    except DarkroomError as exc:
        problems.append(f"tenant {tenant!r}: {exc.code}: {exc.message}")
    callback_url = given.callback_url.get_secret_value() if given.callback_url else None
    if callback_url:
        try:
            guard.admit(callback_url, resolve=False)
        except DarkroomError as exc:
            problems.append(f"callback_url {mask_url(callback_url)}: {exc.code}: {exc.message}")
    return Rule(
        bucket=given.bucket,
        prefix=given.prefix,
        suffix=given.suffix,
        steps=tuple(steps),
        preset=given.preset,
        tenant=tenant,
        callback_url=callback_url or None,
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
