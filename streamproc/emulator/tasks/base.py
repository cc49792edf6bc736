"""What every emulated API Task declares and how its ``botInput`` is bound to it.

A task declares typed input variables (some required) and output variables. Binding parses
the wire ``botInput`` with :mod:`streamproc.core.values`, then checks each declared
input's type; a problem raises :class:`~streamproc.errors.BotValueError` naming the variable
path (``botInput.iNumAmount: expected NUMBER, got STRING``), which the execute route answers
with 400. Variables the task does not declare are ignored, as the Control Room maps only
variables marked as input; they must still be well-formed values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from streamproc.core.values import (
    BotValue,
    DateTimeValue,
    NumberValue,
    StringValue,
    ValueType,
    parse_bot_values,
    parse_value,
)
from streamproc.errors import BotValueError

BOT_INPUT = "botInput"


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    type: ValueType
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    type: ValueType
    description: str = ""


def string_out(value: str) -> dict[str, Any]:
    return {"type": "STRING", "string": value}


def number_out(value: int | str) -> dict[str, Any]:
    # The Control Room sends NUMBER values as decimal strings.
    return {"type": "NUMBER", "number": str(value)}


def text_input(inputs: Mapping[str, BotValue], name: str) -> str | None:
    value = inputs.get(name)
    return value.value if isinstance(value, StringValue) else None


def number_input(inputs: Mapping[str, BotValue], name: str) -> Decimal | None:
    value = inputs.get(name)
    return value.value if isinstance(value, NumberValue) else None


def datetime_input(inputs: Mapping[str, BotValue], name: str) -> datetime | None:
    value = inputs.get(name)
    return value.value if isinstance(value, DateTimeValue) else None


def parse_inputs(bot_input: Any) -> dict[str, BotValue]:
    """:func:`parse_bot_values` of a botInput, with a fast path for plain STRING values.

    Most inputs are ``{"type": "STRING", "string": ...}``; building their StringValue here
    gives exactly what ``parse_value`` gives, without its generic dispatch, which dominated
    the execute hot path. Every other shape, and every error, goes through values.py.
    """
    if type(bot_input) is not dict:
        return parse_bot_values(bot_input, BOT_INPUT)
    values: dict[str, BotValue] = {}
    for name, obj in bot_input.items():
        text = obj.get("string") if type(obj) is dict else None
        if type(text) is str and obj.get("type", "STRING") == "STRING":
            values[name] = StringValue(text)
        else:
            values[name] = parse_value(obj, f"{BOT_INPUT}.{name}")
    return values


class ApiTask(ABC):
    """An API Task the emulator can execute: declarations plus a deterministic ``run``."""

    file_id: ClassVar[int]
    path: ClassVar[str]
    summary: ClassVar[str]
    inputs: ClassVar[tuple[InputSpec, ...]]
    outputs: ClassVar[tuple[OutputSpec, ...]]

    @property
    def name(self) -> str:
        return self.path.rsplit("\\", 1)[-1]

    def bind(self, bot_input: Any) -> dict[str, BotValue]:
        """The typed inputs of one execute, or BotValueError naming the variable."""
        values = parse_inputs(bot_input)
        for spec in self.inputs:
            value = values.get(spec.name)
            if value is None:
                if spec.required:
                    raise BotValueError(
                        f"{BOT_INPUT}.{spec.name}", f"required {spec.type.value} input is missing"
                    )
                continue
            if value.type is not spec.type:
                raise BotValueError(
                    f"{BOT_INPUT}.{spec.name}",
                    f"expected {spec.type.value}, got {value.type.value}",
                )
        self.check(values)
        return values

    def check(self, inputs: Mapping[str, BotValue]) -> None:  # noqa: B027 - optional hook
        """Task-specific input rules beyond types; raise BotValueError naming the variable."""

    @abstractmethod
    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        """The wire ``botOutput`` for bound inputs."""

    def describe(self) -> dict[str, Any]:
        """A JSON description of the task's contract."""
        return {
            "fileId": str(self.file_id),
            "filePath": self.path,
            "fileName": self.name,
            "summary": self.summary,
            "inputs": [
                {
                    "name": i.name,
                    "type": i.type.value,
                    "required": i.required,
                    "description": i.description,
                }
                for i in self.inputs
            ],
            "outputs": [
                {"name": o.name, "type": o.type.value, "description": o.description}
                for o in self.outputs
            ],
        }
