"""The emulated API Tasks: binding botInput to declared inputs, and each task's outputs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamproc.core.values import ListValue, StringValue
from streamproc.emulator.repository import FileKind, default_repository
from streamproc.emulator.tasks.echo import EchoTask
from streamproc.emulator.tasks.fraud import FraudScoreTask
from streamproc.emulator.tasks.rest import RestTask
from streamproc.emulator.tasks.strings import StringTask
from streamproc.emulator.tasks.zipcode import ZipCodeTask
from streamproc.errors import BotValueError


def s(value: str) -> dict[str, str]:
    return {"type": "STRING", "string": value}


def n(value: str) -> dict[str, str]:
    return {"type": "NUMBER", "number": value}


def run(task: Any, bot_input: Any) -> dict[str, Any]:
    result: dict[str, Any] = task.run(task.bind(bot_input))
    return result


def bind_error(task: Any, bot_input: Any) -> str:
    with pytest.raises(BotValueError) as info:
        task.bind(bot_input)
    return str(info.value)


def test_repository_holds_the_documented_files() -> None:
    """Files 5, 149, 180, 184 and 201 are API Tasks at their documented paths; 7 is a TaskBot."""
    repo = default_repository()
    paths = {f.file_id: (f.path, f.name, f.kind) for f in repo}
    assert paths[149] == ("Automation Anywhere\\Bots\\Zip Code API Task", "Zip Code API Task",
                          FileKind.API_TASK)  # fmt: skip
    assert paths[180][1] == "API_task_String 01 1708025672.bot"
    assert paths[184][1] == "API_task_Rest 01 1708026445.bot"
    assert paths[5][0] == "Automation Anywhere\\Bots\\My-API-Task"
    assert paths[201][0] == "Automation Anywhere\\Bots\\Fraud Score API Task"
    assert paths[7][2] is FileKind.TASKBOT
    assert repo.by_path("Automation Anywhere/Bots/My-API-Task") is repo.by_id(5)


def test_zip_code_76131_answers_the_documented_output() -> None:
    """76131 answers State California, Place San Jose, in that order."""
    output = run(ZipCodeTask(), {"iStrZipCode": s("76131")})
    assert orjson.dumps(output) == orjson.dumps({"State": s("California"), "Place": s("San Jose")})


@pytest.mark.parametrize(
    ("zip_code", "state", "place"),
    [("95134", "California", "San Jose"), ("10001", "New York", "New York"),
     ("60601", "Illinois", "Chicago")],
)  # fmt: skip
def test_other_known_zip_codes(zip_code: str, state: str, place: str) -> None:
    """Other known zips answer their state and place."""
    assert run(ZipCodeTask(), {"iStrZipCode": s(zip_code)}) == {
        "State": s(state), "Place": s(place)
    }  # fmt: skip


def test_unknown_zip_code_answers_no_outputs() -> None:
    """An unknown zip is an empty botOutput."""
    assert run(ZipCodeTask(), {"iStrZipCode": s("00000")}) == {}


def test_type_defaults_to_string() -> None:
    """A value without type is a STRING, as the documentation says."""
    assert run(ZipCodeTask(), {"iStrZipCode": {"string": "10001"}})["Place"] == s("New York")


def test_wrong_type_names_the_variable() -> None:
    """A NUMBER where a STRING is declared is refused naming botInput.<name>."""
    assert bind_error(ZipCodeTask(), {"iStrZipCode": n("76131")}) == (
        "botInput.iStrZipCode: expected STRING, got NUMBER"
    )


def test_missing_required_input_names_the_variable() -> None:
    """A required input that is absent is refused naming it."""
    assert (
        bind_error(FraudScoreTask(), {"iStrCardId": s("c")})
        == "botInput.iNumAmount: required NUMBER input is missing"
    )
    assert "botInput.iStrZipCode" in bind_error(ZipCodeTask(), None)


@pytest.mark.parametrize(
    ("bot_input", "path"),
    [
        ({"iNumAmount": {"type": "NUMBER", "number": "abc"}}, "botInput.iNumAmount.number"),
        ({"iNumAmount": {"type": "WHATEVER"}}, "botInput.iNumAmount.type"),
        ({"iNumAmount": "12"}, "botInput.iNumAmount"),
        ([1, 2], "botInput"),
        ({"iNumAmount": n("1"), "iDtOccurredAt": {"type": "DATETIME", "string": "yesterday"}},
         "botInput.iDtOccurredAt.string"),
    ],
)  # fmt: skip
def test_malformed_values_name_their_path(bot_input: Any, path: str) -> None:
    """values.py's errors name the exact path of the malformed value."""
    assert bind_error(FraudScoreTask(), bot_input).startswith(f"{path}:")


def test_unknown_variables_are_ignored_but_must_be_well_formed() -> None:
    """Undeclared variables do not matter unless malformed."""
    assert run(ZipCodeTask(), {"iStrZipCode": s("10001"), "extra": n("1")})["State"]
    assert "botInput.extra" in bind_error(
        ZipCodeTask(), {"iStrZipCode": s("1"), "extra": {"type": "NUMBER"}}
    )


@pytest.mark.parametrize("depth", [340, 900, 5_000])
def test_deeply_nested_values_are_refused_not_crashed(depth: int) -> None:
    """A value nested hundreds of levels deep is a BotValueError naming its variable."""
    value: dict[str, Any] = s("x")
    for _ in range(depth):
        value = {"type": "LIST", "list": [value]}
    assert bind_error(EchoTask(), {"v": value}).startswith("botInput.v: values nested deeper")


def test_echo_depth_check_does_not_recurse() -> None:
    """The echo task's own depth check walks any depth without running out of stack."""
    value: Any = StringValue("x")
    for _ in range(10_000):
        value = ListValue((value,))
    with pytest.raises(BotValueError) as info:
        EchoTask().check({"v": value})
    assert info.value.path == "botInput.v"


@pytest.mark.parametrize(
    ("operation", "expected"),
    [(None, "HELLO WORLD "), ("lower", "hello world "), ("Title", "Hello World "),
     ("reverse", " dlroW olleH"), ("trim", "Hello World")],
)  # fmt: skip
def test_string_task_operations(operation: str | None, expected: str) -> None:
    """The string task transforms and reports the result's length."""
    bot_input = {"iStrText": s("Hello World ")}
    if operation:
        bot_input["iStrOperation"] = s(operation)
    assert run(StringTask(), bot_input) == {
        "oStrResult": s(expected), "oNumLength": n(str(len(expected)))
    }  # fmt: skip


def test_string_task_refuses_unknown_operations() -> None:
    """An unknown operation is refused at bind time, naming the variable."""
    message = bind_error(StringTask(), {"iStrText": s("x"), "iStrOperation": s("shout")})
    assert message.startswith("botInput.iStrOperation:")


def test_rest_task_simulates_status_codes() -> None:
    """/status/<code> answers that code; others 200 (201 for POST) with a JSON body."""
    ok = run(RestTask(), {"iStrUrl": s("https://api.example/items")})
    assert ok["oNumStatusCode"] == n("200")
    assert orjson.loads(ok["oStrBody"]["string"]) == {
        "method": "GET", "url": "https://api.example/items"
    }  # fmt: skip
    created = run(RestTask(), {"iStrUrl": s("http://x/y"), "iStrMethod": s("post")})
    assert created["oNumStatusCode"] == n("201")
    missing = run(RestTask(), {"iStrUrl": s("http://x/status/404")})
    assert missing["oNumStatusCode"] == n("404")
    assert orjson.loads(missing["oStrBody"]["string"]) == {"error": "Not Found"}


@pytest.mark.parametrize(
    "bot_input",
    [{"iStrUrl": s("ftp://x")}, {"iStrUrl": s("http://x"), "iStrMethod": s("BREW")}],
)
def test_rest_task_refuses_bad_urls_and_methods(bot_input: dict[str, Any]) -> None:
    """Non-http URLs and unknown methods are refused at bind time."""
    bind_error(RestTask(), bot_input)


def test_echo_task_returns_inputs_in_canonical_form() -> None:
    """My-API-Task echoes every variable; native numbers come back as strings."""
    bot_input = {
        "a": s("x"),
        "b": {"type": "NUMBER", "number": 5},
        "c": {"type": "BOOLEAN", "boolean": True},
        "d": {"type": "LIST", "list": [s("y")]},
        "e": {"type": "DICTIONARY", "dictionary": [{"key": "k", "value": s("v")}]},
    }
    assert run(EchoTask(), bot_input) == {
        "a": s("x"),
        "b": n("5"),
        "c": {"type": "BOOLEAN", "boolean": "true"},
        "d": {"type": "LIST", "list": [s("y")]},
        "e": {"type": "DICTIONARY", "dictionary": [{"key": "k", "value": s("v")}]},
    }
    assert run(EchoTask(), None) == {}


def test_echo_task_refuses_values_nested_past_its_limit() -> None:
    """Lists 17 deep, or opaque values with deep raw JSON, are refused (they must serialise)."""
    value: dict[str, Any] = s("x")
    for _ in range(17):
        value = {"type": "LIST", "list": [value]}
    assert "nested deeper" in bind_error(EchoTask(), {"v": value})
    raw: Any = 1
    for _ in range(300):
        raw = [raw]
    assert "nested deeper" in bind_error(EchoTask(), {"f": {"type": "FILE", "x": raw}})


def fraud_input(**values: dict[str, str]) -> dict[str, Any]:
    return {"iNumAmount": n("1500"), **values}


def test_fraud_task_outputs_score_decision_and_reasons() -> None:
    """Outputs: oNumScore NUMBER string, oStrDecision STRING, oLstReasons LIST of STRING."""
    output = run(
        FraudScoreTask(clock=lambda: 1e9),
        fraud_input(
            iStrCountry=s("FR"), iStrCardCountry=s("US"), iStrChannel=s("ecommerce"),
            iStrCurrency=s("USD"), iStrMerchantCategory=s("5732"), iStrCardId=s("c1"),
            iStrEventId=s("e1"),
            iDtOccurredAt={"type": "DATETIME", "string": "2026-11-28T10:00:00+01:00[Europe/Paris]"},
        ),
    )  # fmt: skip
    assert output == {
        "oNumScore": n("45"),
        "oStrDecision": s("REVIEW"),
        "oLstReasons": {
            "type": "LIST",
            "list": [s("high_amount"), s("cross_border"), s("card_not_present")],
        },
    }


def test_fraud_task_accepts_a_native_number_amount() -> None:
    """A JSON number under "number" is accepted on input, as the Control Room does."""
    output = run(FraudScoreTask(), {"iNumAmount": {"type": "NUMBER", "number": 20}})
    assert output["oStrDecision"] == s("APPROVE")
    assert output["oLstReasons"] == {"type": "LIST", "list": []}


@pytest.mark.parametrize("amount", ["-1", "1e13", "1E+999999999"])
def test_fraud_task_refuses_amounts_out_of_range(amount: str) -> None:
    """Negative or absurd amounts are refused naming botInput.iNumAmount."""
    assert bind_error(FraudScoreTask(), {"iNumAmount": n(amount)}).startswith(
        "botInput.iNumAmount:"
    )


def test_fraud_task_velocity_uses_its_clock_without_occurred_at() -> None:
    """Without iDtOccurredAt, the task's clock places events; the fourth adds velocity."""
    task = FraudScoreTask(clock=lambda: 1e9)
    bot_input = fraud_input(iNumAmount=n("20"), iStrCardId=s("card"))
    reasons = [run(task, bot_input)["oLstReasons"]["list"] for _ in range(4)]
    assert reasons[:3] == [[], [], []]
    assert reasons[3] == [s("velocity")]


def test_every_task_describes_its_contract() -> None:
    """describe() lists the declared inputs with type and required flag."""
    fraud = FraudScoreTask().describe()
    assert fraud["fileId"] == "201"
    names = [(i["name"], i["type"], i["required"]) for i in fraud["inputs"]]
    assert ("iNumAmount", "NUMBER", True) in names
    assert ("iDtOccurredAt", "DATETIME", False) in names
    assert [o["name"] for o in fraud["outputs"]] == ["oNumScore", "oStrDecision", "oLstReasons"]
