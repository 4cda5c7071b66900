"""Consumer groups: list them with their lag, and move their committed offsets like ``kafka-consumer-groups``.

A reset is planned first (``plan_reset``: every partition's current and new offset,
clamped to what the partition holds) and executed separately (``execute_reset``), so
the plan an operator reads is exactly what is committed. It is refused while the group
has active members: they would overwrite the reset with their next commit, and Kafka
refuses a commit from outside a live group anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription

from processors.errors import InvalidParameters
from streams.config import Settings
from streams.errors import BrokerUnavailable, GroupActive
from streams.runtime.kafka import make_admin
from streams.runtime.offsets import (
    TIMEOUT_S,
    Key,
    broker_errors,
    committed,
    earliest_offsets,
    end_offsets,
    fetched_ends,
    group_positions,
    lag,
    offsets_at,
    topic_partitions,
)

_IDLE_STATES = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})
_MEMBER_ERRORS = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.NON_EMPTY_GROUP,
    }
)
"""How a broker refuses offsets committed from outside a group that has members."""


@dataclass(frozen=True)
class PlanRow:
    """One partition of a reset: its committed offset now (None: none) and after."""

    topic: str
    partition: int
    current: int | None
    new: int


def _admin(settings: Settings) -> AdminClient:
    return make_admin(settings)


def _describe(admin: AdminClient, group: str) -> ConsumerGroupDescription:
    description: ConsumerGroupDescription = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[
        group
    ].result(TIMEOUT_S)
    return description


def _state_name(state: Enum) -> str:
    return str(state.name).lower()


def list_groups(settings: Settings) -> list[dict[str, Any]]:
    """Every consumer group (under ``settings.topic_prefix`` when one is set): state, members, topics.

    State and members come from DescribeGroups (ListGroups' state is UNKNOWN on the
    embedded broker, which also reports no members: its member count is always 0, the
    state says whether the group is active); topics are those with committed offsets.
    """
    admin = _admin(settings)
    with broker_errors("cannot list consumer groups"):
        listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
        if listed.errors:
            raise BrokerUnavailable(f"cannot list consumer groups: {listed.errors[0]}")
        groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(settings.topic_prefix))
        rows = []
        for group in groups:
            description = _describe(admin, group)
            rows.append(
                {
                    "group": group,
                    "state": _state_name(description.state),
                    "members": len(description.members),
                    "topics": sorted({topic for topic, _ in committed(admin, group)}),
                }
            )
    return rows


def lags(settings: Settings, timeout_s: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """``list_groups`` rows, each with ``lag``: (topic, partition) → records after where the
    group stands (``group_positions``), for every partition of the topics it has committed
    offsets for. The broker has ``timeout_s`` to answer a first topic listing at all.

    Ends are fetched high watermarks (right on both brokers), each read from the lowest
    position any group stands at, so a caught-up group costs an empty fetch.
    """
    admin = _admin(settings)
    with broker_errors(f"cannot reach Kafka at {settings.bootstrap_servers()}"):
        topics = topic_partitions(admin, timeout_s)
    groups = list_groups(settings)
    positions = {
        g["group"]: group_positions(settings, admin, g["group"], {t: topics.get(t, []) for t in g["topics"]})
        for g in groups
    }
    starts: dict[Key, int] = {}
    for here in positions.values():
        for key, offset in here.items():
            starts[key] = min(offset, starts.get(key, offset))
    ends = fetched_ends(
        settings, [TopicPartition(t, p, offset) for (t, p), offset in sorted(starts.items())], TIMEOUT_S
    )
    for g in groups:
        g["lag"] = lag(ends, positions[g["group"]])
    return groups


def _partitions_of(admin: AdminClient, topic: str) -> list[int]:
    """The topic's partitions (``topic_partitions``: never asked for by name, which would
    create it on a broker that auto-creates topics)."""
    with broker_errors(f"cannot look up topic {topic}"):
        partitions = topic_partitions(admin).get(topic)
    if not partitions:
        raise InvalidParameters(f"no topic {topic!r} (name it as `darkroom groups list` shows it)")
    return partitions


def _targets(
    admin: AdminClient, group: str, topic: str | None, committed: dict[tuple[str, int], int]
) -> dict[str, list[int]]:
    """Partitions to reset: every one of ``topic``, else those the group has committed offsets for."""
    if topic is not None:
        return {topic: _partitions_of(admin, topic)}
    if not committed:
        raise InvalidParameters(f"group {group!r} has no committed offsets; name the topic to reset with --topic")
    targets: dict[str, list[int]] = {}
    for t, p in sorted(committed):
        targets.setdefault(t, []).append(p)
    return targets


def _wanted(
    settings: Settings,
    topic: str,
    current: dict[int, int | None],
    ends: dict[int, int],
    *,
    at: datetime | None,
    to_earliest: bool,
    shift_by: int | None,
) -> dict[int, int]:
    """The offset each partition is asked to move to, before clamping (latest is ``ends``)."""
    partitions = sorted(current)
    if to_earliest:
        return earliest_offsets(settings, topic, partitions)
    if shift_by is not None:
        missing = [p for p, offset in current.items() if offset is None]
        if missing:
            raise InvalidParameters(
                f"cannot shift {topic} partitions {missing}: the group has no committed offset there"
            )
        return {p: offset + shift_by for p, offset in current.items() if offset is not None}
    if at is None:
        return ends
    found = offsets_at(settings, topic, partitions, int(at.timestamp() * 1000))
    return {p: ends[p] if offset is None else offset for p, offset in found.items()}


def plan_reset(
    settings: Settings,
    group: str,
    *,
    to_datetime: datetime | None = None,
    by_duration: timedelta | None = None,
    to_earliest: bool = False,
    to_latest: bool = False,
    shift_by: int | None = None,
    topic: str | None = None,
) -> list[PlanRow]:
    """What a reset of ``group`` would commit; exactly one way of choosing the offsets.

    Like ``kafka-consumer-groups --reset-offsets``: a time with no record at or after it
    (``to_datetime``, or now minus ``by_duration``) means the end; every new offset is
    clamped to ``[earliest, end]``; shifting a partition without a committed offset is
    refused. Changes nothing.
    """
    chosen = [to_datetime is not None, by_duration is not None, to_earliest, to_latest, shift_by is not None]
    if sum(chosen) != 1:
        raise InvalidParameters(
            "give exactly one of --to-datetime, --by-duration, --to-earliest, --to-latest, --shift-by"
        )
    at = datetime.now(UTC) - by_duration if by_duration is not None else to_datetime
    admin = _admin(settings)
    with broker_errors(f"cannot read group {group}'s offsets"):
        positions = committed(admin, group)
    plan = []
    for t, partitions in _targets(admin, group, topic, positions).items():
        current = {p: positions.get((t, p)) for p in partitions}
        earliest = earliest_offsets(settings, t, partitions)
        ends = end_offsets(settings, t, partitions)
        wanted = _wanted(settings, t, current, ends, at=at, to_earliest=to_earliest, shift_by=shift_by)
        plan += [PlanRow(t, p, current[p], max(earliest[p], min(ends[p], wanted[p]))) for p in partitions]
    return plan


def _refuse_if_active(admin: AdminClient, group: str) -> None:
    """Raise ``GroupActive`` unless the group is empty or dead.

    Members or any other state count as active: the embedded broker never lists members,
    but reports a group with members as STABLE, and as EMPTY once they left.
    """
    description = _describe(admin, group)
    if description.members or description.state not in _IDLE_STATES:
        raise GroupActive(
            f"group {group} has active members (state {_state_name(description.state)}); "
            "stop its consumers first, or their next commit would undo the reset"
        )


def _refused(group: str, err: KafkaError, where: str) -> Exception:
    if err.code() in _MEMBER_ERRORS:
        return GroupActive(f"the broker refused to reset group {group} ({where}): {err.str()}; it has active members")
    return BrokerUnavailable(f"cannot reset group {group} ({where}): {err.str()}")


def execute_reset(settings: Settings, group: str, plan: Sequence[PlanRow]) -> None:
    """Commit exactly ``plan``'s new offsets for ``group``, then check they read back so.

    Refused (``GroupActive``) while the group has active members, as the broker refuses
    it too; a member that joins between the check and the commit is caught by the
    broker's refusal or by the read-back.
    """
    admin = _admin(settings)
    wanted = [TopicPartition(r.topic, r.partition, r.new) for r in plan]
    with broker_errors(f"cannot reset group {group}"):
        _refuse_if_active(admin, group)
        if not wanted:
            return
        request = ConsumerGroupTopicPartitions(group, wanted)
        try:
            answer = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result(TIMEOUT_S)
        except KafkaException as exc:
            raise _refused(group, exc.args[0], "whole request") from None
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise _refused(group, tp.error, f"{tp.topic} [{tp.partition}]")
        back = committed(admin, group, [TopicPartition(r.topic, r.partition) for r in plan])
    differ = [
        f"{r.topic} [{r.partition}] is {back.get((r.topic, r.partition))}, planned {r.new}"
        for r in plan
        if back.get((r.topic, r.partition)) != r.new
    ]
    if differ:
        raise GroupActive(
            f"group {group}'s offsets read back differ from the plan ({'; '.join(differ)}): "
            "a consumer of the group committed meanwhile"
        )
