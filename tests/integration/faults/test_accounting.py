"""The fault tests' accounting on the real broker: a transaction left open on an output is
reported as such, not as the events it hides."""

from __future__ import annotations

import uuid

import orjson
import pytest
from confluent_kafka import Producer

from tests.integration.faults.topics import (
    TopicsFactory,
    TransactionLeftOpen,
    no_transaction_open,
)

pytestmark = pytest.mark.integration


def test_an_open_transaction_on_an_output_is_named_until_it_commits(
    kafka_bootstrap: str, fault_topics: TopicsFactory
) -> None:
    """Records in a transaction not yet ended fail the check, naming the partition, its
    hidden offsets and the input the first one answers; once committed, the check passes."""
    topics = fault_topics(kafka_bootstrap, partitions=1)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"open-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    decision = {"event_id": "e-1", "source": {"topic": topics.input, "partition": 0, "offset": 7}}
    producer.produce(topics.decisions, orjson.dumps(decision), partition=0)
    producer.flush(30)
    with pytest.raises(TransactionLeftOpen) as left:
        no_transaction_open(kafka_bootstrap, [topics.decisions, topics.dlq], timeout_s=1)
    assert f"{topics.decisions}[0] from offset 0 to 1" in str(left.value)
    assert "'offset': 7" in str(left.value)
    producer.commit_transaction(30)
    no_transaction_open(kafka_bootstrap, [topics.decisions, topics.dlq])
