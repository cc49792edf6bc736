"""API Task allocations: which tasks are deployed for real-time execution, and their budgets.

Each allocation enforces its ``concurrencyLimit`` the way the real-time endpoint does: a
request over the limit fails at once and is never queued. Admission and release are plain
synchronous counter updates on the event loop thread, so no lock is needed and the
high-water mark can never exceed the limit.

The create body is read as the Control Room's Java backend reads it: integers may arrive as
JSON numbers or as numeric strings (the documentation's own example sends ``"fileId": "5"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from streamproc.emulator.problems import ApiError, bad_request, not_found
from streamproc.emulator.repository import FileKind, Repository, RepositoryFile
from streamproc.emulator.tasks import ApiTask

MAX_CONCURRENCY_LIMIT = 100_000
_JAVA_INT_MAX = 2**31 - 1


class Allocation:
    """One allocated API Task: its limit, its live in-flight count and its counters."""

    __slots__ = (
        "concurrency_limit",
        "executed",
        "failed",
        "file",
        "in_flight",
        "invalid",
        "last_attempt",
        "last_request_id",
        "last_traceparent",
        "max_in_flight",
        "rejected",
        "run_as_user_id",
        "task",
    )

    def __init__(
        self, file: RepositoryFile, task: ApiTask, concurrency_limit: int, run_as_user_id: int
    ) -> None:
        self.file = file
        self.task = task
        self.concurrency_limit = concurrency_limit
        self.run_as_user_id = run_as_user_id
        self.in_flight = 0
        self.max_in_flight = 0
        self.executed = 0
        self.rejected = 0
        self.failed = 0
        self.invalid = 0
        # The correlation headers of the latest execute, so an operator can match a request
        # to the event and attempt that sent it.
        self.last_request_id: str | None = None
        self.last_attempt: str | None = None
        self.last_traceparent: str | None = None  # W3C trace context, when the client traces

    def try_acquire(self) -> bool:
        """Admit one execute, or count a rejection when the limit is reached."""
        if self.in_flight >= self.concurrency_limit:
            self.rejected += 1
            return False
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def reset_stats(self) -> None:
        """Zero the counters; the high-water mark restarts from what is in flight now."""
        self.max_in_flight = self.in_flight
        self.executed = self.rejected = self.failed = self.invalid = 0
        self.last_request_id = self.last_attempt = self.last_traceparent = None

    def list_entry(self) -> dict[str, Any]:
        """The entry of the list endpoint: ids as strings, the limit as a number."""
        return {
            "fileId": str(self.file.file_id),
            "filePath": self.file.path,
            "fileName": self.file.name,
            "runAsUserOrNone": str(self.run_as_user_id),
            "concurrencyLimit": self.concurrency_limit,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "fileId": str(self.file.file_id),
            "filePath": self.file.path,
            "concurrencyLimit": self.concurrency_limit,
            "inFlight": self.in_flight,
            "maxInFlight": self.max_in_flight,
            "executed": self.executed,
            "rejected": self.rejected,
            "failed": self.failed,
            "invalid": self.invalid,
            "lastRequestId": self.last_request_id,
            "lastAttempt": self.last_attempt,
            "lastTraceparent": self.last_traceparent,
        }


def read_int(body: Mapping[str, Any], field: str, *, minimum: int, maximum: int) -> int | None:
    """An integer field sent as a JSON number or a numeric string; None when absent or null."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # JSON has one number type: 5.0 is the integer 5
    else:
        raise bad_request(
            f"{field} must be an integer (a JSON number or a numeric string)", {"field": field}
        )
    if not minimum <= number <= maximum:
        raise bad_request(f"{field} must be between {minimum} and {maximum}", {"field": field})
    return number


class Allocations:
    """Every allocation, by file id."""

    def __init__(self, repository: Repository, default_run_as_user_id: int) -> None:
        self._repository = repository
        self._default_run_as = default_run_as_user_id
        self._by_id: dict[int, Allocation] = {}

    def __iter__(self) -> Iterator[Allocation]:
        return iter(sorted(self._by_id.values(), key=lambda a: a.file.file_id))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, file_id: int) -> Allocation | None:
        return self._by_id.get(file_id)

    def add(
        self, file_id: int, concurrency_limit: int = 1, run_as_user_id: int | None = None
    ) -> Allocation:
        """Allocate a repository API Task; ApiError (404, 400, 409) when it cannot be."""
        file = self._repository.by_id(file_id)
        if file is None:
            raise not_found(
                "FILE_NOT_FOUND",
                f"no file with id {file_id} in the repository",
                {"fileId": file_id},
            )
        if file.kind is not FileKind.API_TASK or file.task is None:
            raise ApiError(
                400,
                "NOT_AN_API_TASK",
                f"file {file_id} is not an API Task; only API Tasks run in real-time mode",
                {"fileId": file_id},
            )
        if file_id in self._by_id:
            raise ApiError(
                409,
                "ALLOCATION_EXISTS",
                f"file {file_id} is already allocated",
                {"fileId": file_id},
            )
        allocation = Allocation(
            file, file.task, concurrency_limit, run_as_user_id or self._default_run_as
        )
        self._by_id[file_id] = allocation
        return allocation

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle a create request body; the answer echoes it with applied defaults."""
        file_id = read_int(body, "fileId", minimum=1, maximum=_JAVA_INT_MAX)
        if file_id is None:
            raise bad_request("fileId is required", {"field": "fileId"})
        run_as = read_int(body, "runAsUserOrNone", minimum=1, maximum=_JAVA_INT_MAX)
        limit = read_int(body, "concurrencyLimit", minimum=1, maximum=MAX_CONCURRENCY_LIMIT)
        allocation = self.add(file_id, limit or 1, run_as)
        return {
            "fileId": body["fileId"],
            "runAsUserOrNone": body.get("runAsUserOrNone", allocation.run_as_user_id),
            "concurrencyLimit": body.get("concurrencyLimit", allocation.concurrency_limit),
        }
