"""The documentation's literal examples, replayed through the client against the emulator."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streamproc.app import make_execute_transport
from streamproc.controlroom.allocations import AccessDetails, Allocation
from streamproc.controlroom.credentials import ApiKeyCredentials, BearerCredentials
from streamproc.controlroom.tokens import jwt_claims
from streamproc.controlroom.transport import TransportKind
from streamproc.core.values import (
    BooleanValue,
    DateTimeValue,
    DictionaryValue,
    ListValue,
    NumberValue,
    OpaqueValue,
    StringValue,
    TableValue,
    ValueType,
    parse_value,
)
from streamproc.emulator import EmulatorHandle
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.controlroom.conftest import (
    MY_API_TASK,
    ZIP_CODE_TASK,
    MakeClient,
    developer,
)

pytestmark = pytest.mark.integration

TRANSPORTS: list[TransportKind] = ["aiohttp", "httpx", "httptools", "pyreqwest"]

# The list response of the documentation, field for field.
DOC_LIST = [
    {
        "fileId": "149",
        "filePath": "Automation Anywhere\\Bots\\Zip Code API Task",
        "fileName": "Zip Code API Task",
        "runAsUserOrNone": "12",
        "concurrencyLimit": 1,
    },
    {
        "fileId": "180",
        "filePath": "Automation Anywhere\\Bots\\API_task_String 01 1708025672.bot",
        "fileName": "API_task_String 01 1708025672.bot",
        "runAsUserOrNone": "12",
        "concurrencyLimit": 3,
    },
    {
        "fileId": "184",
        "filePath": "Automation Anywhere\\Bots\\API_task_Rest 01 1708026445.bot",
        "fileName": "API_task_Rest 01 1708026445.bot",
        "runAsUserOrNone": "12",
        "concurrencyLimit": 5,
    },
]


async def test_create_allocation_example(
    emulator_factory: EmulatorFactory, cr_client: MakeClient
) -> None:
    """PUT create with fileId "5", runAsUserOrNone 3, concurrencyLimit 2 echoes those values."""
    emulator = emulator_factory(preallocate=False)
    admin = cr_client(emulator.url)
    created = await admin.create_allocation(5, run_as_user=3, concurrency_limit=2)
    assert created == Allocation(5, None, None, 3, 2)
    assert created.to_wire() == {
        "fileId": "5",
        "filePath": None,
        "fileName": None,
        "runAsUserOrNone": "3",
        "concurrencyLimit": 2,
    }
    assert emulator.allocation_stats(5)["concurrencyLimit"] == 2


@pytest.mark.parametrize("page_size", [100, 2, 1])
async def test_list_allocations_example(
    emulator_factory: EmulatorFactory, cr_client: MakeClient, page_size: int
) -> None:
    """After creating 149, 180 and 184, the list equals the documented response at any page size."""
    emulator = emulator_factory(preallocate=False)
    admin = cr_client(emulator.url)
    for file_id, limit in ((149, 1), (180, 3), (184, 5)):
        await admin.create_allocation(file_id, run_as_user=12, concurrency_limit=limit)
    listed = [a async for a in admin.allocations(page_size=page_size)]
    assert [a.to_wire() for a in listed] == DOC_LIST
    assert listed[0] == Allocation(149, DOC_LIST[0]["filePath"], "Zip Code API Task", 12, 1)


async def test_access_details_example(emulator: EmulatorHandle, cr_client: MakeClient) -> None:
    """accessdetails for My-API-Task gives an /execute URL and an X-Authorization JWT only."""
    await cr_client(emulator.url).create_allocation(5, concurrency_limit=2)
    got = await cr_client(emulator.url, developer()).access_details([MY_API_TASK])
    assert list(got) == [MY_API_TASK]
    details = got[MY_API_TASK]
    assert isinstance(details, AccessDetails)
    assert details.url.startswith(emulator.url)
    assert details.url.endswith("/execute")
    assert list(details.headers) == ["X-Authorization"]
    claims = jwt_claims(details.headers["X-Authorization"])
    assert claims is not None
    assert claims["iss"] == "AutomationAnywhere"
    assert claims["exp"] - claims["iat"] == 43200


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_execute_example(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """Executing iStrZipCode 76131 answers State California and Place San Jose, in order."""
    await cr_client(emulator.url).create_allocation(149, run_as_user=12, concurrency_limit=1)
    transport = make_execute_transport(kind)
    try:
        session = cr_client(emulator.url, developer()).execution_session(ZIP_CODE_TASK, transport)
        result = await session.execute({"iStrZipCode": StringValue("76131")}, timeout_s=5.0)
    finally:
        await transport.aclose()
    assert result.status == 200
    assert list(result.outputs.items()) == [
        ("State", StringValue("California")),
        ("Place", StringValue("San Jose")),
    ]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_every_value_type_round_trips_through_the_echo_task(
    emulator: EmulatorHandle, cr_client: MakeClient, kind: TransportKind
) -> None:
    """Each typed value sent to the echo task comes back equal, over both transports."""
    await cr_client(emulator.url).create_allocation(5, concurrency_limit=2)
    moment = parse_value(
        {"type": "DATETIME", "string": "2022-04-07T00:15:00-06:00[America/Denver]"}
    )
    assert isinstance(moment, DateTimeValue)
    sent = {
        "iStr": StringValue("76131"),
        "iNum": NumberValue(Decimal("42.50")),
        "iBool": BooleanValue(True),
        "iDt": moment,
        "iList": ListValue((StringValue("a"), NumberValue(Decimal(1)))),
        "iDict": DictionaryValue((("key1", StringValue("value1")),)),
        "iTable": TableValue(("c1", "c2"), ((StringValue("x"), BooleanValue(False)),)),
        "iFile": OpaqueValue(ValueType.FILE, {"type": "FILE", "file": {"name": "a.pdf"}}),
    }
    transport = make_execute_transport(kind)
    try:
        session = cr_client(emulator.url, developer()).execution_session(MY_API_TASK, transport)
        result = await session.execute(sent, timeout_s=5.0)
    finally:
        await transport.aclose()
    assert result.outputs == sent


async def test_api_key_on_v1_and_bearer_tokens_authenticate(
    emulator: EmulatorHandle, cr_client: MakeClient
) -> None:
    """An API key on /v1/authentication works, and its JWT works again as a bearer token."""
    await cr_client(emulator.url).create_allocation(149, concurrency_limit=1)
    key = "EMULATOR-FAKE-API-KEY-FOR-BOT-DEVELOPER0"
    by_key = cr_client(emulator.url, ApiKeyCredentials("bot-developer", key), auth_version="v1")
    await by_key.authenticate()
    assert by_key.token is not None
    assert by_key.token.user["username"] == "bot-developer"
    bearer = cr_client(emulator.url, BearerCredentials(by_key.token.token))
    got = await bearer.access_details([ZIP_CODE_TASK])
    assert isinstance(got[ZIP_CODE_TASK], AccessDetails)
