from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import Credentials, PasswordCredentials
from tests.unit.controlroom.fakes import CR, PASSWORD, FakeClock, FakeControlRoom

MakeClient = Callable[..., ControlRoomClient]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_cr(clock: FakeClock) -> FakeControlRoom:
    return FakeControlRoom(clock)


@pytest.fixture
async def make_client(fake_cr: FakeControlRoom, clock: FakeClock) -> AsyncIterator[MakeClient]:
    """Clients wired to the fake Control Room; all closed at teardown."""
    made: list[ControlRoomClient] = []

    def make(credentials: Credentials | None = None, **kw: object) -> ControlRoomClient:
        client = ControlRoomClient(
            CR,
            credentials or PasswordCredentials("bot-developer", PASSWORD),
            clock=clock,
            transport=fake_cr.transport(),
            **kw,  # type: ignore[arg-type]
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client: MakeClient) -> ControlRoomClient:
    return make_client()
