"""``streamproc dlq replay`` against the real broker: what it writes, what it commits, how fast."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import orjson
import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streamproc.demo.reader import end_offsets
from streamproc.dlq.selection import REPLAY_COUNT, REPLAY_SOURCE
from streamproc.kafka.admin import TopicSpec, ensure_topics
from tests.fixtures.kafka import TopicFactory, consume_records, delete_topics, produce_records
from tests.integration.dlq.helpers import NOW, Ran, dead_letter, run_replay

pytestmark = pytest.mark.integration

HOUR = 3600.0


@dataclass
class Topics:
    dlq: str
    target: str
    group: str


@pytest.fixture
def topics(kafka_bootstrap: str, topic_factory: TopicFactory, unique_group: str) -> Topics:
    return Topics(topic_factory("dlq", partitions=2), topic_factory("in", 3), unique_group)


def replay(bootstrap: str, topics: Topics, *flags: str) -> Ran:
    """``streamproc dlq replay`` in this process, reading ``topics.dlq`` into ``topics.target``."""
    return run_replay(bootstrap, topics.dlq, topics.target, topics.group, *flags)


def replayed(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` (it is read up to its end, as counted by the broker)."""
    total = written(bootstrap, topic)
    got = consume_records(bootstrap, topic, count=total, timeout_s=10) if total else []
    assert len(got) == total
    return got


def written(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds: the sum of its partitions' ends."""
    return sum(end_offsets({"bootstrap.servers": bootstrap}, [topic]).values())


def test_replay_writes_the_selected_originals_back_once(
    kafka_bootstrap: str, topics: Topics
) -> None:
    """Selected dead letters go back as their original key, value and headers plus a replay
    count; one over the limit is reported, not replayed; a second run with the same group
    replays nothing again, and a third replays only what arrived since."""
    letters = {
        "a": dead_letter("a"),
        "b": dead_letter("b", stage="execute", error_class="streamproc.errors.BadRequestError"),
        "c": dead_letter("c", stage="decode", error_class="streamproc.errors.DecodeError"),
        "d": dead_letter("d", replays=3),
        "e": dead_letter("e", replays=1),
    }
    not_a_dead_letter = (b"k", b"{}", [("x-test-id", b"f")])
    produce_records(kafka_bootstrap, topics.dlq, [*letters.values(), not_a_dead_letter])

    first = replay(kafka_bootstrap, topics, "--stage", "validate", "--stage", "execute")

    assert first.status == 0, first.err
    got = {m.headers()[0][1].decode(): m for m in replayed(kafka_bootstrap, topics.target)}
    assert sorted(got) == ["a", "b", "e"]
    for event_id, message in got.items():
        key, value, headers = letters[event_id]
        assert (message.key(), message.value()) == (key, value)
        names = [name for name, _ in message.headers()]
        original = [h for h in headers if not h[0].startswith(("streamproc.", "__connect."))]
        count = b"2" if event_id == "e" else b"1"
        assert message.headers()[: len(original)] == original
        assert dict(message.headers())[REPLAY_COUNT] == count
        assert dict(message.headers())[REPLAY_SOURCE].startswith(topics.dlq.encode() + b":")
        assert not any(n.startswith(("streamproc.error.", "__connect.")) for n in names)
    assert "over limit    " in first.out
    assert "event d  stage validate" in first.out
    assert "replayed 3 times already (limit 3)" in first.out
    assert "  replayed      3 (validate 2 · execute 1)" in first.out
    assert "  over limit    1 " in first.out
    assert "  filtered out  1" in first.out
    assert "  skipped       1 " in first.out

    second = replay(kafka_bootstrap, topics, "--stage", "validate", "--stage", "execute")
    assert second.status == 0, second.err
    assert "  read          0 of 0 dead letters" in second.out
    assert "  replayed      0" in second.out

    produce_records(kafka_bootstrap, topics.dlq, [dead_letter("g")])
    third = replay(kafka_bootstrap, topics, "--stage", "validate")
    assert third.status == 0, third.err
    assert "  replayed      1 (validate 1)" in third.out
    final = replayed(kafka_bootstrap, topics.target)
    assert sorted(m.headers()[0][1].decode() for m in final) == ["a", "b", "e", "g"]


def test_every_filter_flag_reaches_the_selection(kafka_bootstrap: str, topics: Topics) -> None:
    """With all filters at once, only the dead letter matching every one is replayed: each
    of the others fails exactly one criterion."""
    ok = {"stage": "execute", "partition": 1, "offset": 150, "failed_at": NOW - 600}
    cases = {
        "match": ok,
        "wrong-stage": ok | {"stage": "map"},
        "wrong-class": ok | {"error_class": "streamproc.errors.ServerError"},
        "too-old": ok | {"failed_at": NOW - 3 * HOUR},
        "too-new": ok | {"failed_at": NOW + HOUR},
        "wrong-partition": ok | {"partition": 2},
        "wrong-offset": ok | {"offset": 99},
    }
    letters = [
        dead_letter(
            name,
            error_class=str(fields.get("error_class", "streamproc.errors.BadRequestError")),
            **{k: v for k, v in fields.items() if k != "error_class"},  # type: ignore[arg-type]
        )
        for name, fields in cases.items()
    ]
    letters.append(dead_letter("other-id", **ok))  # type: ignore[arg-type]
    produce_records(kafka_bootstrap, topics.dlq, letters)

    ran = replay(
        kafka_bootstrap, topics,
        "--stage", "execute", "--error-class", "BadRequestError",
        "--since", "2h", "--until", "1m", "--partition", "1", "--offsets", "100..200",
        "--event-id", ",".join([*cases, "nowhere"]),
    )  # fmt: skip

    assert ran.status == 0, ran.err
    got = replayed(kafka_bootstrap, topics.target)
    assert [m.headers()[0][1] for m in got] == [b"match"]
    assert "  filtered out  7" in ran.out


def test_a_dry_run_writes_nothing_and_commits_nothing(kafka_bootstrap: str, topics: Topics) -> None:
    """--dry-run lists what it would replay and what is over the limit, writes nothing and
    leaves the position, so a real run afterwards replays everything."""
    produce_records(
        kafka_bootstrap,
        topics.dlq,
        [dead_letter("a"), dead_letter("b"), dead_letter("c", replays=3)],
    )

    dry = replay(kafka_bootstrap, topics, "--dry-run")

    assert dry.status == 0, dry.err
    lines = dry.out.splitlines()
    assert sum(line.startswith("would replay  ") for line in lines) == 2
    assert "event a  stage validate  EventValidationError  from transactions:0:10" in dry.out
    assert sum(line.startswith("over limit    ") for line in lines) == 1
    assert "(dry run: nothing written, position not committed)" in dry.out
    assert written(kafka_bootstrap, topics.target) == 0
    assert _committed(kafka_bootstrap, topics) == {0: -1001, 1: -1001}

    real = replay(kafka_bootstrap, topics)
    assert real.status == 0, real.err
    assert len(replayed(kafka_bootstrap, topics.target)) == 2


def test_the_rate_limit_spaces_the_replays(kafka_bootstrap: str, topics: Topics) -> None:
    """At --rate 20, 25 replayed records span at least 24/20 s of produce time, where an
    unpaced replay writes them within milliseconds."""
    produce_records(kafka_bootstrap, topics.dlq, [dead_letter(f"r{i}") for i in range(25)])

    ran = replay(kafka_bootstrap, topics, "--rate", "20")

    assert ran.status == 0, ran.err
    stamps = sorted(m.timestamp()[1] for m in replayed(kafka_bootstrap, topics.target))
    assert len(stamps) == 25
    assert (stamps[-1] - stamps[0]) / 1000 >= 24 / 20 * 0.9


def test_a_record_the_broker_refuses_stops_the_run_before_it(
    kafka_bootstrap: str, unique_group: str
) -> None:
    """When the target refuses a record, the run exits 1 naming it, and the position is
    committed up to it, not past: a rerun does not replay the records before it again."""
    dlq, target = f"dlq-{unique_group}", f"small-{unique_group}"
    ensure_topics(
        kafka_bootstrap,
        {dlq: 1, target: TopicSpec(1, config={"max.message.bytes": "4096"})},
    )
    topics = Topics(dlq, target, unique_group)
    try:
        big = dead_letter("big")
        # Random bytes: the producer compresses, and the broker must still see it as too big.
        pad = base64.b64encode(os.urandom(20_000)).decode()
        big = (big[0], orjson.dumps({"event_id": "big", "pad": pad}), big[2])
        produce_records(kafka_bootstrap, dlq, [dead_letter("s0"), dead_letter("s1"), big])

        first = replay(kafka_bootstrap, topics)

        assert first.status == 1
        assert f"replaying dead letter {dlq}:0:2" in first.err
        assert _committed(kafka_bootstrap, topics, partitions=1) == {0: 2}
        second = replay(kafka_bootstrap, topics)
        assert second.status == 1
        assert "  replayed      0" in second.out
        got = replayed(kafka_bootstrap, target)
        assert [m.headers()[0][1] for m in got] == [b"s0", b"s1"]
    finally:
        delete_topics(kafka_bootstrap, [dlq, target])


def test_a_missing_topic_is_a_configuration_error(kafka_bootstrap: str, topics: Topics) -> None:
    """A dead-letter or target topic the broker does not have exits 2 naming it."""
    missing = Topics(topics.dlq, "no-such-topic-" + topics.group, topics.group)
    ran = replay(kafka_bootstrap, missing)
    assert ran.status == 2
    assert f"topic {missing.target!r} does not exist" in ran.err
    assert "(set by --to or kafka.input_topic)" in ran.err


def _committed(bootstrap: str, topics: Topics, partitions: int = 2) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topics.group})
    try:
        tps = [KafkaTopicPartition(topics.dlq, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()
