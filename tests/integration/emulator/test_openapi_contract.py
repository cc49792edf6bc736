"""The emulator's OpenAPI document is exact: schemathesis over every operation.

The emulator is the reference a user tests against, so its contract must hold both ways:
no request gets a 5xx, every answer has a documented status and matches its documented
schema, a request the document calls invalid is refused, and a request it calls valid is
not refused as malformed (400, 413, 415). Generation is deterministic (fixed seed), with a
bounded number of examples per operation, so a run takes well under a minute.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamproc.emulator import EmulatorHandle
from streamproc.emulator.openapi import openapi_document
from tests.fixtures.emulator import EmulatorFactory

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
# Checks left out where a body obeys rules a JSON schema cannot state, so the document cannot
# call every request it allows valid: an execute's botInput is checked by the typed-value
# rules and by the API Task's own contract (GET /emulator/v1/repository), and a behaviour
# change by error_rate + hang_rate <= 1 with the task's current values.
LEFT_OUT: dict[tuple[str, str], tuple[Any, ...]] = {
    ("POST", "/hotbot/{botId}/execute"): (negative_data_rejection, positive_data_acceptance),
    ("PUT", "/emulator/v1/behavior/{fileId}"): (positive_data_acceptance,),
}
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261201,
        "generation": {"deterministic": True, "max-examples": 25},
        # Requests run one at a time against an emulator of this test's own.
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


class Identities:
    """Tokens for the generated requests: an admin token that no generated request can end
    (logout gets a fresh token of its own), and an execution token for the echo task."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = self.login()
        response = requests.post(
            f"{url}/orchestrator/v1/hotbot/config/accessdetails",
            json={"botRepositoryPath": ["Automation Anywhere\\Bots\\My-API-Task"]},
            headers={"X-Authorization": self.admin},
            timeout=10,
        )
        detail = response.json()["accessDetails"]["Automation Anywhere\\Bots\\My-API-Task"]
        self.execution = detail["headers"]["X-Authorization"]

    def login(self) -> str:
        answer = requests.post(
            f"{self.url}/v1/authentication",
            json={"username": "cr-admin", "password": "cr-admin-password", "multipleLogin": True},
            timeout=10,
        )
        token: str = answer.json()["token"]
        return token

    def for_case(self, case: Any) -> str:
        path = case.operation.path
        if path == "/v1/authentication/logout":
            return self.login()
        if path == "/hotbot/{botId}/execute":
            return self.execution
        return self.admin


@pytest.fixture
def identities(emulator_factory: EmulatorFactory) -> Identities:
    emulator: EmulatorHandle = emulator_factory(
        allocations=[{"fileId": 201, "concurrencyLimit": 8}, {"fileId": 5, "concurrencyLimit": 8}]
    )
    return Identities(emulator.url)


def test_the_served_document_is_the_one_checked(emulator: EmulatorHandle) -> None:
    """The emulator serves exactly the document this contract run is generated from."""
    with requests.get(f"{emulator.url}/emulator/v1/openapi.json", timeout=10) as answer:
        assert orjson.loads(answer.content) == openapi_document()


@schema.parametrize()
# One emulator per operation serves all of that operation's examples (each request stands
# alone), and a slow shared machine must not fail the run.
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_keeps_to_the_document(case: Any, identities: Identities) -> None:
    """No 5xx, documented statuses and schemas only, and the document's limits are the
    server's: what it calls invalid is refused, what it calls valid is not refused as bad."""
    token = identities.for_case(case)
    # The identity is this test's choice: one header (sending both is refused by design).
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    left_out = LEFT_OUT.get((case.operation.method.upper(), case.operation.path), ())
    checks = [check for check in CHECKS if check not in left_out]
    case.call_and_validate(
        base_url=identities.url, headers={"X-Authorization": token}, checks=checks
    )


def _valid(document: dict[str, Any], name: str, value: Any) -> bool:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return bool(jsonschema_rs.validator_for(schema).is_valid(value))


@pytest.mark.parametrize(
    ("endpoint", "schema_name", "body", "valid"),
    [
        ("PUT /emulator/v1/behavior/201", "BehaviorPatch", {"latency_ms": None}, False),
        ("PUT /emulator/v1/behavior/201", "BehaviorPatch", None, False),
        ("PUT /emulator/v1/behavior/201", "BehaviorPatch", {"latency_ms": "5"}, False),
        ("PUT /emulator/v1/behavior/201", "BehaviorPatch", {"latency_ms": 5}, True),
        ("POST /v1/authentication/token", "TokenBody", {"token": None}, False),
        ("POST /v1/authentication/logout", "TokenBody", {"token": None}, False),
        ("POST /orchestrator/v1/hotbot/config/accessdetails", "AccessDetailsRequest",
         {"botRepositoryPath": []}, False),
        ("POST /v1/authentication", "LoginRequest", {"username": "", "password": "x"}, False),
        ("PUT /orchestrator/v1/hotbot/config/create", "Allocation", {"fileId": 0}, False),
        ("PUT /orchestrator/v1/hotbot/config/create", "Allocation", {"fileId": 149}, True),
    ],
)  # fmt: skip
def test_the_document_and_the_server_agree_on_each_request_once_found_apart(
    identities: Identities, endpoint: str, schema_name: str, body: Any, valid: bool
) -> None:
    """Requests the document and the server once judged differently are now judged alike."""
    method, path = endpoint.split(" ", 1)
    document = openapi_document()
    assert _valid(document, schema_name, body) is valid
    headers = {"X-Authorization": identities.admin, "Content-Type": "application/json"}
    answer = requests.request(
        method, identities.url + path, data=orjson.dumps(body), headers=headers, timeout=10
    )
    assert (answer.status_code != 400) is valid, answer.text


def test_a_behaviour_answer_matches_its_schema(identities: Identities) -> None:
    """GET and PUT of a behaviour answer with fileId, which the answer's schema declares."""
    document = openapi_document()
    answer = requests.get(f"{identities.url}/emulator/v1/behavior/201", timeout=10).json()
    assert answer["fileId"] == "201"
    assert _valid(document, "TaskBehavior", answer)
    listing = requests.get(f"{identities.url}/emulator/v1/behavior", timeout=10).json()
    assert all(_valid(document, "Behavior", entry) for entry in listing.values())
