"""``API_task_String 01 1708025672.bot`` (file 180): a string transform.

Inputs: ``iStrText`` (STRING, required) and ``iStrOperation`` (STRING, optional, default
``upper``): one of ``upper``, ``lower``, ``title``, ``reverse``, ``trim`` (case-insensitive);
any other operation is a 400 naming ``botInput.iStrOperation``.
Outputs: ``oStrResult`` (STRING, the transformed text) and ``oNumLength`` (NUMBER, its length
in characters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streamproc.core.values import BotValue, ValueType
from streamproc.emulator.tasks.base import (
    ApiTask,
    InputSpec,
    OutputSpec,
    number_out,
    string_out,
    text_input,
)
from streamproc.errors import BotValueError

OPERATIONS: Mapping[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "reverse": lambda text: text[::-1],
    "trim": str.strip,
}


class StringTask(ApiTask):
    file_id = 180
    path = "Automation Anywhere\\Bots\\API_task_String 01 1708025672.bot"
    summary = "Transforms a string (upper, lower, title, reverse, trim) and reports its length."
    inputs = (
        InputSpec("iStrText", ValueType.STRING, True, "the text to transform"),
        InputSpec(
            "iStrOperation", ValueType.STRING, False, "upper (default), lower, title, reverse, trim"
        ),
    )
    outputs = (
        OutputSpec("oStrResult", ValueType.STRING, "the transformed text"),
        OutputSpec("oNumLength", ValueType.NUMBER, "length of the result in characters"),
    )

    @staticmethod
    def _operation(inputs: Mapping[str, BotValue]) -> str:
        return (text_input(inputs, "iStrOperation") or "upper").strip().lower()

    def check(self, inputs: Mapping[str, BotValue]) -> None:
        if self._operation(inputs) not in OPERATIONS:
            raise BotValueError(
                "botInput.iStrOperation",
                f"unknown operation; expected one of {', '.join(OPERATIONS)}",
            )

    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        result = OPERATIONS[self._operation(inputs)](text_input(inputs, "iStrText") or "")
        return {"oStrResult": string_out(result), "oNumLength": number_out(len(result))}
