"""API Task allocations and their access details: typed, parsed tolerantly, built exactly.

The Control Room documents ``fileId`` and ``runAsUserOrNone`` as integers but sends them as
strings (``"149"``, ``"12"``); parsing accepts either and yields ints. Request bodies follow
the documented samples field for field (``fileId`` as a string, optional fields omitted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.errors import AccessDetailsError, ControlRoomError


def malformed(problem: str) -> ControlRoomError:
    """A 2xx answer whose JSON lacks the documented shape; the client adds the request context."""
    return ControlRoomError(f"malformed response: {problem}")


@dataclass(frozen=True, slots=True)
class Allocation:
    """One API Task deployed to the cloud with its real-time concurrency budget.

    ``file_path``/``file_name`` are None in the create response, which echoes only the ids.
    """

    file_id: int
    file_path: str | None
    file_name: str | None
    run_as_user: int | None
    concurrency_limit: int

    def to_wire(self) -> dict[str, Any]:
        """The allocation as the list endpoint spells it (for JSON output)."""
        return {
            "fileId": str(self.file_id),
            "filePath": self.file_path,
            "fileName": self.file_name,
            "runAsUserOrNone": None if self.run_as_user is None else str(self.run_as_user),
            "concurrencyLimit": self.concurrency_limit,
        }


@dataclass(frozen=True, slots=True)
class AccessDetails:
    """Where and how to execute one API Task: the execute URL and the headers to send.

    The headers hold the execution token, so ``repr`` shows their names only.
    """

    path: str
    url: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        names = sorted(self.headers)
        return f"AccessDetails(path={self.path!r}, url={self.url!r}, headers={names})"


@dataclass(frozen=True, slots=True)
class Page:
    """Paging facts from a list response; ``total_filter`` is the count after filtering."""

    offset: int
    total: int | None
    total_filter: int | None


def create_body(
    file_id: int, run_as_user: int | None, concurrency_limit: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"fileId": str(file_id)}
    if run_as_user is not None:
        body["runAsUserOrNone"] = run_as_user
    if concurrency_limit is not None:
        body["concurrencyLimit"] = concurrency_limit
    return body


def list_body(
    offset: int,
    length: int,
    filter: Mapping[str, Any] | None = None,
    sort: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if filter is not None:
        body["filter"] = dict(filter)
    if sort is not None:
        body["sort"] = [dict(s) for s in sort]
    body["page"] = {"offset": offset, "length": length}
    return body


def parse_allocation(obj: Any, *, fallback: Mapping[str, Any] | None = None) -> Allocation:
    """Parse one allocation; ``fallback`` fills fields the server did not echo."""
    if not isinstance(obj, Mapping):
        raise malformed(f"an allocation must be an object, got {type(obj).__name__}")
    merged = {**(fallback or {}), **{k: v for k, v in obj.items() if v is not None}}
    limit = _int(merged.get("concurrencyLimit"), "concurrencyLimit")
    if limit is None:
        raise malformed("allocation has no concurrencyLimit")
    file_id = _int(merged.get("fileId"), "fileId")
    if file_id is None:
        raise malformed("allocation has no fileId")
    return Allocation(
        file_id=file_id,
        file_path=_str(merged.get("filePath")),
        file_name=_str(merged.get("fileName")),
        run_as_user=_int(merged.get("runAsUserOrNone"), "runAsUserOrNone"),
        concurrency_limit=limit,
    )


def parse_list_page(data: Any) -> tuple[list[Allocation], Page]:
    if not isinstance(data, Mapping):
        raise malformed("the allocation list response is not an object")
    items = data.get("list") or []
    if not isinstance(items, list):
        raise malformed("'list' in the allocation list response is not an array")
    page = data.get("page") if isinstance(data.get("page"), Mapping) else {}
    assert isinstance(page, Mapping)
    return [parse_allocation(item) for item in items], Page(
        offset=_int(page.get("offset"), "page.offset") or 0,
        total=_int(page.get("total"), "page.total"),
        total_filter=_int(page.get("totalFilter"), "page.totalFilter"),
    )


def parse_access_details(
    data: Any, paths: Sequence[str]
) -> dict[str, AccessDetails | AccessDetailsError]:
    """One entry per requested path: its details, or why the Control Room gave none.

    An ``errors`` entry may be a message string or a ``{code, message, details}`` object; a
    path that appears in neither map is reported too, rather than silently missing.
    """
    if not isinstance(data, Mapping):
        raise malformed("the accessdetails response is not an object")
    details = data.get("accessDetails") or {}
    errors = data.get("errors") or {}
    if not isinstance(details, Mapping) or not isinstance(errors, Mapping):
        raise malformed("accessDetails and errors must be objects")
    out: dict[str, AccessDetails | AccessDetailsError] = {}
    for path, entry in errors.items():
        out[str(path)] = AccessDetailsError(str(path), _reason(entry))
    for path, entry in details.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
            out[str(path)] = AccessDetailsError(str(path), "the entry has no execution url")
            continue
        headers = entry.get("headers") or {}
        if not isinstance(headers, Mapping):
            out[str(path)] = AccessDetailsError(str(path), "the entry's headers are not an object")
            continue
        out[str(path)] = AccessDetails(
            path=str(path),
            url=entry["url"],
            headers={str(k): str(v) for k, v in headers.items()},
        )
    for path in paths:
        out.setdefault(path, AccessDetailsError(path, "absent from the accessdetails response"))
    return out


def _reason(entry: Any) -> str:
    if isinstance(entry, Mapping):
        message = entry.get("message") or entry.get("details") or ""
        code = entry.get("code")
        text = f"{message} ({code})" if message and code else str(message or code or "")
        return text or "no reason given"
    return str(entry) if entry not in (None, "") else "no reason given"


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise malformed(f"{name} must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise malformed(f"{name} must be an integer, got {value!r}")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)
