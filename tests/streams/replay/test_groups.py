"""``darkroom groups list|reset`` on the test broker (the offset lookups behind them:
``tests/streams/runtime/test_offsets.py``).

Records carry explicit timestamps, so every expected offset is known: partition 0 holds
minutes 0, 2, 4, 6, 8 after ``T0`` at offsets 0–4, partition 1 minutes 1, 3, 5, 7, 9.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from processors.errors import InvalidParameters
from streams.config import Settings
from streams.errors import GroupActive
from streams.replay import groups
from streams.replay.groups import list_groups, plan_reset
from streams.runtime.kafka import make_consumer
from tests.streams.cli.test_cli import assert_one_line_error, darkroom
from tests.streams.runtime.test_offsets import PARTITIONS, T0, commit, timed_topic


@pytest.fixture
def topic(settings: Settings) -> str:
    return timed_topic(settings, "groups.test")


@pytest.fixture
def group(settings: Settings) -> str:
    return settings.topic("darkroom.groups-test")


def committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    consumer = make_consumer(settings, group)
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in PARTITIONS], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in answer}


@pytest.fixture
def committed_group(settings: Settings, topic: str, group: str) -> str:
    """``group`` with committed offsets 1 and 4 on ``topic``'s two partitions."""
    commit(settings, group, topic, {0: 1, 1: 4})
    return group


def reset(settings: Settings, group: str, *args: str) -> dict[str, Any]:
    """Run ``groups reset … --json``; its one document: group, executed, plan."""
    result = darkroom("groups", "reset", group, *args, "--json", env=settings.to_env())
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def new_offsets(doc: dict[str, Any]) -> dict[int, int]:
    return {row["partition"]: row["new_offset"] for row in doc["plan"]}


@pytest.mark.integration
def test_list_shows_the_groups_under_the_prefix_with_their_topics(settings: Settings, topic: str, group: str) -> None:
    commit(settings, group, topic, {0: 1})
    commit(settings, f"other-{group}", topic, {0: 1})
    assert list_groups(settings) == [{"group": group, "state": "empty", "members": 0, "topics": [topic]}]
    result = darkroom("groups", "list", env=settings.to_env())
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["GROUP", "STATE", "MEMBERS", "TOPICS"]
    assert row.split() == [group, "empty", "0", topic]


@pytest.mark.integration
def test_dry_run_prints_the_plan_and_changes_nothing(settings: Settings, topic: str, committed_group: str) -> None:
    group = committed_group
    when = (T0 + timedelta(minutes=4, seconds=30)).isoformat()
    result = darkroom("groups", "reset", group, "--to-datetime", when, "--dry-run", env=settings.to_env())
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[:3] == [
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        [group, topic, "0", "1", "3"],
        [group, topic, "1", "4", "2"],
    ]
    assert "nothing changed" in result.stdout
    assert reset(settings, group, "--to-earliest", "--dry-run")["executed"] is False
    assert committed(settings, group, topic) == {0: 1, 1: 4}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (["--to-datetime", (T0 + timedelta(minutes=4, seconds=30)).isoformat()], {0: 3, 1: 2}),
        (["--to-datetime", "2026-03-01T13:00"], {0: 5, 1: 5}),  # naive is UTC; after every record: the end
        (["--shift-by", "-3"], {0: 0, 1: 1}),  # 1 - 3 is clamped to the earliest offset
        (["--shift-by", "3"], {0: 4, 1: 5}),  # 4 + 3 is clamped to the end
        (["--to-earliest"], {0: 0, 1: 0}),
        (["--to-latest"], {0: 5, 1: 5}),
    ],
)
def test_execute_commits_exactly_the_printed_plan(
    settings: Settings, topic: str, committed_group: str, how: list[str], expected: dict[int, int]
) -> None:
    group = committed_group
    doc = reset(settings, group, *how, "--execute")
    assert doc["executed"] is True
    assert doc["plan"] == [
        {"topic": topic, "partition": 0, "current_offset": 1, "new_offset": expected[0]},
        {"topic": topic, "partition": 1, "current_offset": 4, "new_offset": expected[1]},
    ]
    assert committed(settings, group, topic) == new_offsets(doc)


@pytest.mark.integration
def test_by_duration_is_now_minus_the_duration(settings: Settings, topic: str, committed_group: str) -> None:
    group = committed_group
    ago = datetime.now(UTC) - (T0 + timedelta(minutes=4, seconds=30))
    plan = plan_reset(settings, group, by_duration=ago - timedelta(seconds=20))  # 20 s of slack after minute 4:30
    assert {r.partition: r.new for r in plan} == {0: 3, 1: 2}
    assert new_offsets(reset(settings, group, "--by-duration", "P9999D", "--execute")) == {0: 0, 1: 0}


@pytest.mark.integration
def test_a_topic_names_every_partition_even_without_committed_offsets(
    settings: Settings, topic: str, group: str
) -> None:
    doc = reset(settings, group, "--to-latest", "--topic", topic, "--execute")
    assert [(r["current_offset"], r["new_offset"]) for r in doc["plan"]] == [(None, 5), (None, 5)]
    assert committed(settings, group, topic) == {0: 5, 1: 5}


@pytest.mark.integration
def test_what_cannot_be_planned_is_a_usage_error(settings: Settings, topic: str, group: str) -> None:
    with pytest.raises(InvalidParameters, match="no committed offsets"):
        plan_reset(settings, group, to_latest=True)
    with pytest.raises(InvalidParameters, match="no committed offset there"):
        plan_reset(settings, group, shift_by=1, topic=topic)
    env = settings.to_env()
    assert_one_line_error(
        darkroom("groups", "reset", group, "--to-latest", "--execute", env=env), "invalid_parameters", 2
    )
    missing = darkroom("groups", "reset", group, "--to-latest", "--topic", f"{topic}.none", "--execute", env=env)
    assert_one_line_error(missing, "invalid_parameters", 2)
    assert f"{topic}.none" not in {g for row in list_groups(settings) for g in row["topics"]}


@pytest.fixture
def active_member(settings: Settings, topic: str, committed_group: str) -> Iterator[threading.Event]:
    """A consumer of ``group`` subscribed to ``topic`` and polling until the event is set."""
    stop, assigned = threading.Event(), threading.Event()

    def consume() -> None:
        consumer = make_consumer(settings, committed_group)
        consumer.subscribe([topic])
        try:
            while not stop.is_set():
                consumer.poll(0.2)
                if consumer.assignment():
                    assigned.set()
        finally:
            consumer.close()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert assigned.wait(30), "the member never got its partitions"
    yield stop
    stop.set()
    thread.join(30)


@pytest.mark.integration
def test_reset_is_refused_while_the_group_has_active_members(
    settings: Settings, topic: str, committed_group: str, active_member: threading.Event
) -> None:
    group = committed_group
    refused = darkroom("groups", "reset", group, "--to-earliest", "--execute", env=settings.to_env())
    assert_one_line_error(refused, "group_active", 1)
    assert refused.stdout.splitlines()[0].split()[0] == "GROUP"  # the plan was printed first
    assert committed(settings, group, topic) == {0: 1, 1: 4}

    active_member.set()  # the member closes, leaving the group
    deadline = time.monotonic() + 30
    while list_groups(settings)[0]["state"] != "empty" and time.monotonic() < deadline:
        time.sleep(0.5)
    doc = reset(settings, group, "--to-earliest", "--execute")
    assert committed(settings, group, topic) == new_offsets(doc) == {0: 0, 1: 0}


@pytest.mark.integration
def test_the_brokers_own_refusal_is_group_active_too(
    settings: Settings,
    topic: str,
    committed_group: str,
    active_member: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member that joins between the check and the commit: the broker refuses the commit."""
    monkeypatch.setattr(groups, "_refuse_if_active", lambda admin, group: None)
    plan = plan_reset(settings, committed_group, to_earliest=True)
    with pytest.raises(GroupActive):
        groups.execute_reset(settings, committed_group, plan)
    assert committed(settings, committed_group, topic) == {0: 1, 1: 4}


def test_a_reset_needs_one_way_and_one_mode() -> None:
    """argparse's own usage errors, before any broker is asked."""
    for args in (
        ["G", "--to-latest"],
        ["G", "--dry-run"],
        ["G", "--to-latest", "--shift-by", "1", "--dry-run"],
        ["G", "--to-latest", "--dry-run", "--execute"],
    ):
        result = darkroom("groups", "reset", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr
