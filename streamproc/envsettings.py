"""Settings from environment variables: every variable under a prefix must name a setting.

``<PREFIX><SECTION>__<KEY>`` sets one key (``__`` separates nested keys, in any letter case:
``STREAMPROC_PROCESSING__RETRY__MAX_ATTEMPTS=5``); a variable naming a table, a list or a
mapping as a whole (``STREAMPROC_API_TASKS``, ``STREAMPROC_KAFKA__CONSUMER_OVERRIDES``) holds
it as JSON. A variable that names no setting is an error, as an unknown key in a file is: a
misspelt variable is a setting that silently did not apply.

A single key's text is converted by its type (``"1000"`` for an integer, ``"yes"`` for a
boolean), so the result can be validated as strictly as a typed file; JSON values keep
their JSON types. Problems are :class:`~streamproc.errors.ConfigError` naming the variable,
never quoting its value (it may be a secret).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from streamproc.errors import ConfigError

Loc = tuple[str, ...]


@dataclass
class EnvironmentSettings:
    """The values the variables set, nested like a settings file, and which variable set
    which key (to name it when the value is refused)."""

    data: dict[str, Any] = field(default_factory=dict)
    variables: dict[Loc, str] = field(default_factory=dict)

    def variable_for(self, loc: tuple[int | str, ...]) -> str | None:
        """The variable that set ``loc`` or a table holding it, if one did."""
        for end in range(len(loc), 0, -1):
            name = self.variables.get(tuple(str(part) for part in loc[:end]))
            if name is not None:
                return name
        return None


def read_environment(
    model: type[BaseModel],
    prefix: str,
    environ: Mapping[str, str],
    *,
    ignore: tuple[str, ...] = (),
) -> EnvironmentSettings:
    """Every ``prefix`` variable (but those starting with one of ``ignore``) as settings data."""
    found = EnvironmentSettings()
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(prefix) or upper.startswith(ignore):
            continue
        loc, annotation = _resolve(model, prefix, name)
        value = _convert(environ[name], annotation, name, loc)
        _set(found.data, loc, value)
        found.variables[loc] = name
    return found


def _resolve(model: type[BaseModel], prefix: str, name: str) -> tuple[Loc, Any]:
    parts = name[len(prefix) :].lower().split("__")
    current: type[BaseModel] | None = model
    loc: list[str] = []
    annotation: Any = None
    for part in parts:
        if current is None:
            whole = prefix + "__".join(loc).upper()
            raise ConfigError(
                name,
                f"unknown variable: {'.'.join(loc)} is not a table of keys; "
                f"give its whole value as JSON in {whole}",
            )
        info = current.model_fields.get(part)
        if not part or info is None:
            where = f"in {'.'.join(loc)}" if loc else "at the top level"
            known = ", ".join(current.model_fields)
            raise ConfigError(
                name,
                f"unknown variable: {part or '(empty)'!r} names no setting {where} "
                f"(known: {known})",
            )
        loc.append(part)
        annotation = info.annotation
        current = model_of(annotation)
    return tuple(loc), annotation


def admitted_types(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation admits (Optional and unions spelled out, Annotated unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return admitted_types(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return tuple(m for arg in get_args(annotation) for m in admitted_types(arg))
    return (annotation,)


def model_of(annotation: Any) -> type[BaseModel] | None:
    for member in admitted_types(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _is_structured(annotation: Any) -> bool:
    """Whether a value of this type is a table, a list or a mapping (given as JSON)."""
    for member in admitted_types(annotation):
        origin = get_origin(member) or member
        if not isinstance(origin, type) or issubclass(origin, str | bytes):
            continue
        if issubclass(origin, BaseModel | Mapping | Sequence | AbstractSet):
            return True
    return False


def _convert(text: str, annotation: Any, name: str, loc: Loc) -> Any:
    key = ".".join(loc)
    if _is_structured(annotation):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            # orjson names the position, never the text, so the message is safe to show.
            raise ConfigError(key, f"{name} is not valid JSON: {exc}") from None
    try:
        value = TypeAdapter(annotation).validate_python(text)
    except ValidationError as exc:
        problem = exc.errors(include_input=False, include_url=False)[0]["msg"]
        raise ConfigError(key, f"{problem.removeprefix('Value error, ')} (set by {name})") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    """A converted value as plain JSON data (a secret as its text: it is validated next)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return value


def _set(data: dict[str, Any], loc: Loc, value: Any) -> None:
    for part in loc[:-1]:
        below = data.get(part)
        if not isinstance(below, dict):
            below = data[part] = {}
        data = below
    below = data.get(loc[-1])
    if isinstance(below, dict) and isinstance(value, dict):
        data[loc[-1]] = deep_merge(below, value)
    else:
        data[loc[-1]] = value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, tables merged key by key."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged
