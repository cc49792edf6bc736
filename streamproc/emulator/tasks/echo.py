"""``My-API-Task`` (file 5): echoes its ``botInput`` back as ``botOutput``.

It declares no variables and accepts any: every well-formed input variable comes back under
the same name, in the canonical wire form (NUMBER and BOOLEAN as strings). Values nested more
than 16 levels deep are refused with a 400, so the echo stays serialisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamproc.controlroom.values import (
    BotValue,
    DictionaryValue,
    ListValue,
    OpaqueValue,
    TableValue,
    dump_bot_values,
)
from streamproc.emulator.tasks.base import ApiTask
from streamproc.errors import BotValueError

MAX_DEPTH = 16


def _json_depth(obj: Any) -> int:
    """Nesting depth of a JSON value, without recursion (opaque values arrive as raw JSON)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def _depth(value: BotValue) -> int:
    if isinstance(value, OpaqueValue):
        return _json_depth(value.raw)
    if isinstance(value, ListValue):
        children: tuple[BotValue, ...] = value.items
    elif isinstance(value, DictionaryValue):
        children = tuple(v for _, v in value.entries)
    elif isinstance(value, TableValue):
        children = tuple(v for row in value.rows for v in row)
    else:
        return 1
    return 1 + max((_depth(child) for child in children), default=0)


class EchoTask(ApiTask):
    file_id = 5
    path = "Automation Anywhere\\Bots\\My-API-Task"
    summary = "Echoes every botInput variable back as a botOutput variable of the same name."
    inputs = ()
    outputs = ()

    def check(self, inputs: Mapping[str, BotValue]) -> None:
        for name, value in inputs.items():
            if _depth(value) > MAX_DEPTH:
                raise BotValueError(
                    f"botInput.{name}", f"values nested deeper than {MAX_DEPTH} levels"
                )

    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        return dump_bot_values(inputs)
