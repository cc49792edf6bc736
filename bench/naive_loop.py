"""The naive processor, the baseline of the CPU benchmark: one event at a time.

    python -m bench.naive_loop --topic T --decisions D --group G --url CONTROL_ROOM --count N

Poll one record, map it to a ``botInput``, ``httpx.post`` it to the API Task, produce the
decision, commit: the loop a first version of a scoring consumer would be. It uses the same
event decoding and mapping as streamproc, so the comparison is about the architecture around
them. Exits after ``--count`` records.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import httpx
import orjson
from confluent_kafka import Consumer, Producer

from streamproc.config import FRAUD_SCORE_PATH
from streamproc.controlroom.allocations import AccessDetails
from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import PasswordCredentials
from streamproc.core.events import decode_event
from streamproc.core.mapping import DEFAULT_FRAUD_MAPPING, map_bot_input
from streamproc.core.values import dump_value


async def _details(url: str) -> AccessDetails:
    credentials = PasswordCredentials("bot-developer", "bot-developer-password")
    async with ControlRoomClient(url, credentials) as client:
        found = (await client.access_details([FRAUD_SCORE_PATH]))[FRAUD_SCORE_PATH]
    if not isinstance(found, AccessDetails):
        raise found
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--decisions", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--url", required=True, help="Control Room URL")
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    details = asyncio.run(_details(args.url))
    headers = {"Content-Type": "application/json", **details.headers}
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    consumer.subscribe([args.topic])
    done = 0
    with httpx.Client(timeout=10) as http:
        while done < args.count:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            event = decode_event(msg.value())
            bot_input = map_bot_input(event, DEFAULT_FRAUD_MAPPING)
            body = orjson.dumps({"botInput": {k: dump_value(v) for k, v in bot_input.items()}})
            response = http.post(details.url, content=body, headers=headers)
            decision = {
                "event_id": event.event_id,
                "result": orjson.loads(response.content).get("hotBotResult"),
                "fallback": response.status_code != 200,
                "fallback_reason": None,
                "decided_at": datetime.now(UTC).isoformat(),
                "latency_ms": 0.0,
            }
            producer.produce(args.decisions, key=msg.key(), value=orjson.dumps(decision))
            producer.poll(0)
            consumer.commit(msg, asynchronous=True)
            done += 1
    producer.flush(30)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
