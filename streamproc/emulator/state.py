"""One running emulator's state, built from settings: the composition root of the emulator.

Everything here lives on the server's event loop thread; handlers reach it through the
application (``request.app[STATE]``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from streamproc.emulator.allocations import Allocations
from streamproc.emulator.behavior import TaskBehavior
from streamproc.emulator.httpio import BodyLimits
from streamproc.emulator.identity import Identity
from streamproc.emulator.problems import ApiError
from streamproc.emulator.repository import Repository, default_repository
from streamproc.emulator.settings import EmulatorSettings
from streamproc.emulator.tokens import TokenService, generate_key, load_key
from streamproc.errors import ConfigError


@dataclass(slots=True)
class EmulatorState:
    settings: EmulatorSettings
    repository: Repository
    identity: Identity
    tokens: TokenService
    allocations: Allocations
    behaviors: dict[int, TaskBehavior]
    body: BodyLimits
    clock: Callable[[], float] = time.time
    # Set when the server stops, so held ("hanging") requests end at once.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # How late the event loop's timers fire, on average (seconds): simulated latency is
    # shortened by it, so that an execute answers when its latency says, not a bit after.
    timer_lateness: float = 0.0

    def behavior(self, file_id: int) -> TaskBehavior | None:
        return self.behaviors.get(file_id)

    def reset_stats(self) -> None:
        for allocation in self.allocations:
            allocation.reset_stats()

    def stats(self) -> dict[str, object]:
        return {"allocations": [a.stats() for a in self.allocations]}


def build_state(
    settings: EmulatorSettings, *, clock: Callable[[], float] = time.time
) -> EmulatorState:
    """Keys, users, repository, start allocations and behaviours; ConfigError when invalid."""
    key = load_key(settings.private_key_file) if settings.private_key_file else generate_key()
    tokens = TokenService(key, settings.tenant_uuid, clock=clock)
    identity = Identity(
        settings.users,
        tokens,
        token_ttl_seconds=settings.token_ttl_seconds,
        execution_token_ttl_seconds=settings.execution_token_ttl_seconds,
    )
    repository = default_repository(clock)
    task_ids = {t.file_id for t in repository.tasks()}
    for file_id in settings.task_behavior:
        if file_id not in task_ids:
            raise ConfigError(f"task_behavior.{file_id}", "no API Task has this file id")
    behaviors = {
        file_id: TaskBehavior(settings.behavior_for(file_id), f"{settings.seed}:{file_id}")
        for file_id in sorted(task_ids)
    }
    allocations = Allocations(repository, settings.default_run_as_user_id)
    if settings.preallocate:
        for i, spec in enumerate(settings.allocations):
            try:
                allocations.add(spec.file_id, spec.concurrency_limit, spec.run_as_user_id)
            except ApiError as exc:
                raise ConfigError(f"allocations[{i}].file_id", exc.message) from None
    body = BodyLimits(settings.max_body_bytes, settings.body_timeout_seconds)
    return EmulatorState(
        settings, repository, identity, tokens, allocations, behaviors, body, clock
    )


STATE = web.AppKey("emulator_state", EmulatorState)
