"""The Control Room repository as the emulator knows it: checked-in files by id and by path.

Most files are API Tasks the emulator can run; one TaskBot is there so that allocating a file
that is not an API Task can be refused as the Control Room refuses it. Paths use the Control
Room's backslash separators; a lookup also accepts forward slashes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from streamproc.emulator.tasks import ApiTask, default_tasks


class FileKind(StrEnum):
    API_TASK = "application/vnd.aa.headlessbot"
    TASKBOT = "application/vnd.aa.taskbot"


@dataclass(frozen=True, slots=True)
class RepositoryFile:
    file_id: int
    path: str
    kind: FileKind
    task: ApiTask | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("\\", 1)[-1]


def _normalise(path: str) -> str:
    return path.replace("/", "\\")


class Repository:
    """Files by id and by normalised path."""

    def __init__(self, files: Iterable[RepositoryFile]) -> None:
        self._by_id: dict[int, RepositoryFile] = {}
        self._by_path: dict[str, RepositoryFile] = {}
        for file in files:
            if file.file_id in self._by_id or _normalise(file.path) in self._by_path:
                raise ValueError(f"duplicate repository file {file.file_id} {file.path!r}")
            self._by_id[file.file_id] = file
            self._by_path[_normalise(file.path)] = file

    def __iter__(self) -> Iterator[RepositoryFile]:
        return iter(sorted(self._by_id.values(), key=lambda f: f.file_id))

    def by_id(self, file_id: int) -> RepositoryFile | None:
        return self._by_id.get(file_id)

    def by_path(self, path: str) -> RepositoryFile | None:
        return self._by_path.get(_normalise(path))

    def tasks(self) -> list[ApiTask]:
        return [f.task for f in self if f.task is not None]


def default_repository(clock: Callable[[], float] = time.time) -> Repository:
    """The documented API Tasks, the Fraud Score API Task, and one TaskBot."""
    files = [RepositoryFile(t.file_id, t.path, FileKind.API_TASK, t) for t in default_tasks(clock)]
    files.append(
        RepositoryFile(7, "Automation Anywhere\\Bots\\Nightly Settlement Report", FileKind.TASKBOT)
    )
    return Repository(files)
