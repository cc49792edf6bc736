"""``My-API-Task`` (file 5): echoes its ``botInput`` back as ``botOutput``.

It declares no variables and accepts any: every well-formed input variable comes back under
the same name, in the canonical wire form (NUMBER and BOOLEAN as strings). Values nested more
than 16 levels deep are refused with a 400, so the echo stays serialisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamproc.core.values import (
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
    """Nesting depth of a typed value, without recursion: a deep value must be a 400."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, OpaqueValue):
            deepest = max(deepest, depth - 1 + _json_depth(node.raw))
            continue
        deepest = max(deepest, depth)
        if isinstance(node, ListValue):
            stack.extend((child, depth + 1) for child in node.items)
        elif isinstance(node, DictionaryValue):
            stack.extend((child, depth + 1) for _, child in node.entries)
        elif isinstance(node, TableValue):
            stack.extend((child, depth + 1) for row in node.rows for child in row)
    return deepest


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
