"""The documentation's literal request and response examples, replayed over raw HTTP."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from streamproc.emulator import EmulatorHandle
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.emulator.helpers import ADMIN, DEVELOPER, call, claims, login

pytestmark = pytest.mark.integration

CREATE_REQUEST = """{
  "fileId": "5",
  "runAsUserOrNone": 3,
  "concurrencyLimit": 2
}"""
CREATE_RESPONSE = CREATE_REQUEST

LIST_REQUEST = """{
  "page": {
    "offset": 0,
    "length": 100
  }
}"""
LIST_RESPONSE = r"""{
    "list": [
        {
            "fileId": "149",
            "filePath": "Automation Anywhere\\Bots\\Zip Code API Task",
            "fileName": "Zip Code API Task",
            "runAsUserOrNone": "12",
            "concurrencyLimit": 1
        },
        {
            "fileId": "180",
            "filePath": "Automation Anywhere\\Bots\\API_task_String 01 1708025672.bot",
            "fileName": "API_task_String 01 1708025672.bot",
            "runAsUserOrNone": "12",
            "concurrencyLimit": 3
        },
        {
            "fileId": "184",
            "filePath": "Automation Anywhere\\Bots\\API_task_Rest 01 1708026445.bot",
            "fileName": "API_task_Rest 01 1708026445.bot",
            "runAsUserOrNone": "12",
            "concurrencyLimit": 5
        }
    ],
    "page": {
        "offset": 0,
        "total": 3,
        "totalFilter": 3
    }
}"""

ACCESS_REQUEST = r"""{
  "botRepositoryPath": [
    "Automation Anywhere\\Bots\\My-API-Task"
  ]
}"""
# The documented execution token; its claims are the shape the emulator's must have.
SAMPLE_EXECUTION_TOKEN = (
    "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiIzODAiLCJ0ZW5hbnRVdWlkIjoiMGE2NjUzNDMtODhlOS0xN2JlLTgxODkt"
    "OTM2ZGFkNWQwMTQ0IiwiY2xpZW50VHlwZSI6IldFQiIsIm11bHRpcGxlTG9naW4iOnRydWUsImJvdElkIjoyNjg5LC"
    "JpYXQiOjE3MDgzNTIxOTgsImV4cCI6MTcwODM5NTM5OCwiaXNzIjoiQXV0b21hdGlvbkFueXdoZXJlIiwibmFub1Rp"
    "bWUiOjI5OTg3MDkyNzIxNjc5MH0.signature"
)

EXECUTE_REQUEST = """{
   "botInput":{
      "iStrZipCode":{
         "type":"STRING",
         "string":"76131"
      }
   }
}"""
EXECUTE_RESPONSE = """{
   "hotBotResult":{
      "botOutput":{
         "State":{
            "type":"STRING",
            "string":"California"
         },
         "Place":{
            "type":"STRING",
            "string":"San Jose"
         }
      }
   }
}"""

JSON = {"Content-Type": "application/json"}


async def send(
    session: aiohttp.ClientSession, method: str, url: str, text: str, token: str | None = None
) -> tuple[int, bytes]:
    headers = {**JSON, **({"X-Authorization": token} if token else {})}
    async with session.request(method, url, data=text.encode(), headers=headers) as response:
        return response.status, await response.read()


@pytest.fixture
def bare(emulator_factory: EmulatorFactory) -> EmulatorHandle:
    """An emulator with no allocations, as an admin would find a fresh Control Room."""
    return emulator_factory(preallocate=False)


async def test_authenticate_example(bare: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """POST v1 and v2 /authentication answer a JWT and the user, for both default users."""
    for version in ("v1", "v2"):
        for user in (ADMIN, DEVELOPER):
            status, body = await call(session, "POST", f"{bare.url}/{version}/authentication", user)
            assert status == 200
            assert body["token"].startswith("eyJhbGciOiJSUzUxMiJ9.")
            assert body["user"]["username"] == user["username"]
            assert {"id", "email", "firstName", "lastName", "roles"} <= set(body["user"])


async def test_create_example(bare: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """The create example's body is answered with the same object."""
    token = await login(session, bare.url)
    status, raw = await send(
        session, "PUT", f"{bare.url}/orchestrator/v1/hotbot/config/create", CREATE_REQUEST, token
    )
    assert status == 200
    assert orjson.loads(raw) == orjson.loads(CREATE_RESPONSE)


async def test_list_example(bare: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """After allocating 149, 180 and 184 as documented, the list equals the example exactly."""
    token = await login(session, bare.url)
    for file_id, limit in (("149", 1), ("180", 3), ("184", 5)):
        body = f'{{"fileId": "{file_id}", "runAsUserOrNone": 12, "concurrencyLimit": {limit}}}'
        status, _ = await send(
            session, "PUT", f"{bare.url}/orchestrator/v1/hotbot/config/create", body, token
        )
        assert status == 200
    status, raw = await send(
        session, "POST", f"{bare.url}/orchestrator/v1/hotbot/config", LIST_REQUEST, token
    )
    assert status == 200
    assert orjson.loads(raw) == orjson.loads(LIST_RESPONSE)


async def test_accessdetails_example(bare: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """The accessdetails example answers a URL and an execution token shaped as documented."""
    admin = await login(session, bare.url)
    await send(
        session, "PUT", f"{bare.url}/orchestrator/v1/hotbot/config/create", CREATE_REQUEST, admin
    )
    developer = await login(session, bare.url, DEVELOPER)
    status, raw = await send(
        session,
        "POST",
        f"{bare.url}/orchestrator/v1/hotbot/config/accessdetails",
        ACCESS_REQUEST,
        developer,
    )
    assert status == 200
    body = orjson.loads(raw)
    assert body["errors"] == {}
    assert list(body["accessDetails"]) == ["Automation Anywhere\\Bots\\My-API-Task"]
    detail = body["accessDetails"]["Automation Anywhere\\Bots\\My-API-Task"]
    assert detail["url"] == f"{bare.url}/hotbot/5/execute"
    assert list(detail["headers"]) == ["X-Authorization"]
    token = detail["headers"]["X-Authorization"]
    assert token.split(".", 1)[0] == SAMPLE_EXECUTION_TOKEN.split(".", 1)[0]
    ours, sample = claims(token), claims(SAMPLE_EXECUTION_TOKEN)
    assert list(ours) == list(sample)
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in sample.items()}
    assert ours["exp"] - ours["iat"] == sample["exp"] - sample["iat"] == 43200
    assert (ours["sub"], ours["botId"], ours["multipleLogin"]) == ("380", 5, True)


async def test_execute_example(bare: EmulatorHandle, session: aiohttp.ClientSession) -> None:
    """Executing the Zip Code API Task with 76131 answers the documented response exactly."""
    admin = await login(session, bare.url)
    await send(
        session,
        "PUT",
        f"{bare.url}/orchestrator/v1/hotbot/config/create",
        '{"fileId": "149", "runAsUserOrNone": 12, "concurrencyLimit": 1}',
        admin,
    )
    developer = await login(session, bare.url, DEVELOPER)
    path = r"Automation Anywhere\\Bots\\Zip Code API Task"
    status, raw = await send(
        session,
        "POST",
        f"{bare.url}/orchestrator/v1/hotbot/config/accessdetails",
        f'{{"botRepositoryPath": ["{path}"]}}',
        developer,
    )
    detail = orjson.loads(raw)["accessDetails"]["Automation Anywhere\\Bots\\Zip Code API Task"]
    status, raw = await send(
        session, "POST", detail["url"], EXECUTE_REQUEST, detail["headers"]["X-Authorization"]
    )
    assert status == 200
    assert orjson.loads(raw) == orjson.loads(EXECUTE_RESPONSE)
    assert raw == orjson.dumps(orjson.loads(EXECUTE_RESPONSE))  # same key order: State, Place
