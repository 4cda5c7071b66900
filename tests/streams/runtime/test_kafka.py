"""How delivery errors are sorted: rebuild the producer, wait for the broker, or fail the record."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from streams.errors import AccessRefused, BrokerUnavailable
from streams.runtime.kafka import ProducerFailed, check_delivery_error


@pytest.mark.parametrize(
    "err",
    [
        KafkaError(KafkaError._FENCED, "fenced"),
        KafkaError(KafkaError.PRODUCER_FENCED, "There is a newer producer with the same transactionalId"),
        KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "gap", fatal=True),
    ],
)
def test_an_unusable_producer_is_to_be_rebuilt(err: KafkaError) -> None:
    with pytest.raises(ProducerFailed):
        check_delivery_error(err)


@pytest.mark.parametrize("code", [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.UNKNOWN_TOPIC_OR_PART])
def test_a_record_refused_for_good_is_reported_not_retried(code: int) -> None:
    assert check_delivery_error(KafkaError(code, "refused")) == "refused"


def test_refused_credentials_stop_the_worker_instead_of_failing_records() -> None:
    with pytest.raises(AccessRefused):
        check_delivery_error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not authorised"))


@pytest.mark.parametrize("code", [KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError.NOT_ENOUGH_REPLICAS])
def test_anything_else_is_an_outage_to_wait_out(code: int) -> None:
    with pytest.raises(BrokerUnavailable) as info:
        check_delivery_error(KafkaError(code, "down"))
    assert not isinstance(info.value, ProducerFailed)
