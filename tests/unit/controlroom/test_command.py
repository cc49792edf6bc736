from __future__ import annotations

import argparse
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from streamproc.controlroom import command
from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.connection import Connection, read_sources, resolve
from streamproc.controlroom.credentials import (
    ApiKeyCredentials,
    BearerCredentials,
    PasswordCredentials,
)
from streamproc.core.values import BooleanValue, ListValue, NumberValue, StringValue
from streamproc.errors import BotValueError, ConfigError
from tests.unit.controlroom.fakes import (
    API_KEY,
    BEARER,
    CR,
    PASSWORD,
    PATH,
    FakeControlRoom,
    alloc,
)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="streamproc")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["controlroom", *argv])
    status: int = args.handler(args)
    return status


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, fake_cr: FakeControlRoom) -> Iterator[FakeControlRoom]:
    """Route the command's client to the fake Control Room and clear the environment."""
    for key in ("URL", "USERNAME", "PASSWORD", "API_KEY", "BEARER_TOKEN", "AUTH_VERSION"):
        monkeypatch.delenv(f"STREAMPROC_CONTROLROOM__{key}", raising=False)

    def client(args: argparse.Namespace, connection: Connection) -> ControlRoomClient:
        return ControlRoomClient(
            connection.url,
            connection.credentials,
            auth_version=connection.auth_version,
            transport=fake_cr.transport(),
        )

    monkeypatch.setattr(command, "_client", client)
    # The command configures process-wide logging onto stderr; under capsys that stream is
    # closed after the test, so keep the test process's logging configuration as it is.
    # Log events are captured instead (unconfigured structlog would print them to stdout).
    monkeypatch.setattr(command.logs, "configure", lambda *a, **kw: None)
    with structlog.testing.capture_logs():
        yield fake_cr


def test_inputs_are_typed_from_name_type_value_pairs() -> None:
    """--input NAME=[TYPE:]VALUE yields typed values; an unknown prefix stays part of a STRING."""
    got = command.parse_inputs(
        ["iStrZipCode=76131", "iNum=number:12.50", "iOk=BOOLEAN:true", "iUrl=http://x"], None
    )
    assert got == {
        "iStrZipCode": StringValue("76131"),
        "iNum": NumberValue(Decimal("12.50")),
        "iOk": BooleanValue(True),
        "iUrl": StringValue("http://x"),
    }


def test_input_json_accepts_wire_values_and_a_botinput_wrapper(tmp_path: Path) -> None:
    """--input-json takes a wire botInput (bare or wrapped), inline or from @file."""
    wire = {"iLst": {"type": "LIST", "list": [{"type": "STRING", "string": "a"}]}}
    file = tmp_path / "in.json"
    file.write_bytes(orjson.dumps({"botInput": wire}))
    expected = {"iLst": ListValue((StringValue("a"),))}
    assert command.parse_inputs([], orjson.dumps(wire).decode()) == expected
    assert command.parse_inputs([], f"@{file}") == expected


@pytest.mark.parametrize(
    ("pairs", "json_text"),
    [(["novalue"], None), (["n=NUMBER:abc"], None), ([], "{not json"), ([], "@/nonexistent")],
)
def test_bad_inputs_are_bot_value_errors(pairs: list[str], json_text: str | None) -> None:
    """Malformed --input or --input-json raise BotValueError (a one-line CLI error)."""
    with pytest.raises(BotValueError):
        command.parse_inputs(pairs, json_text)


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    """Keys from [controlroom] in the TOML file are overridden by STREAMPROC_CONTROLROOM__*."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[kafka]\ngroup_id = "x"\n[controlroom]\nurl = "http://file:1"\nusername = "u"\n'
        'password = "from-file"\nauth_version = "v1"\n'
    )
    values = read_sources(config, {"STREAMPROC_CONTROLROOM__URL": "http://env:2"})
    connection = resolve(values)
    assert connection.url == "http://env:2"
    assert connection.auth_version == "v1"
    assert isinstance(connection.credentials, PasswordCredentials)
    assert connection.credentials.password.get_secret_value() == "from-file"


def test_each_credential_kind_and_the_admin_identity() -> None:
    """Password, API key, bearer token and admin_* each resolve to their credential type."""
    base = {"url": CR, "username": "u"}
    assert isinstance(resolve({**base, "api_key": API_KEY}).credentials, ApiKeyCredentials)
    assert isinstance(resolve({"url": CR, "bearer_token": "t"}).credentials, BearerCredentials)
    admin = resolve(
        {**base, "password": "p", "admin_username": "cr-admin", "admin_password": "a"},
        admin=True,
    )
    assert isinstance(admin.credentials, PasswordCredentials)
    assert admin.credentials.username == "cr-admin"


@pytest.mark.parametrize(
    "values",
    [
        {"url": CR, "username": "u"},
        {"url": CR, "username": "u", "password": PASSWORD, "api_key": API_KEY},
        {"url": CR, "password": PASSWORD},
        {"username": "u", "password": PASSWORD},
        {"url": CR, "username": "u", "password": PASSWORD, "auth_version": "v3"},
    ],
)
def test_invalid_connection_settings_are_config_errors(values: dict[str, Any]) -> None:
    """No credential, two credentials, no username, no URL, or a bad version: ConfigError."""
    with pytest.raises(ConfigError) as caught:
        resolve(values)
    assert PASSWORD not in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_login_prints_user_and_expiry_but_not_the_token(
    offline: FakeControlRoom, capsys: pytest.CaptureFixture[str]
) -> None:
    """login prints JSON with the user and expiry; the token only with --show-token."""
    env = ["--url", CR]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMPROC_CONTROLROOM__USERNAME", "bot-developer")
        mp.setenv("STREAMPROC_CONTROLROOM__PASSWORD", PASSWORD)
        assert run_cli("login", *env) == 0
        out = orjson.loads(capsys.readouterr().out)
        assert out["user"] == {"id": 7, "username": "bot-developer"}
        assert out["tokenExpiresAt"].endswith("+00:00")
        assert "token" not in out
        assert run_cli("login", *env, "--show-token") == 0
        assert orjson.loads(capsys.readouterr().out)["token"].startswith("eyJ")


def test_allocations_list_and_access_details_print_json(
    offline: FakeControlRoom, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """allocations list prints every allocation; access-details masks tokens and flags gaps."""
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__URL", CR)
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__USERNAME", "bot-developer")
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__API_KEY", API_KEY)
    offline.allocations = [alloc(149), alloc(180)]
    assert run_cli("allocations", "list", "--page-size", "1") == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [a["fileId"] for a in listed] == ["149", "180"]

    assert run_cli("access-details", PATH, "Missing") == 1
    captured = capsys.readouterr()
    out = orjson.loads(captured.out)
    assert out[PATH]["headers"] == {"X-Authorization": "***"}
    assert out["Missing"] == {"error": "API Task is not allocated"}
    assert "Missing" in captured.err
    assert "exec-token" not in captured.out + captured.err


def test_expected_errors_are_one_line_without_secrets(
    offline: FakeControlRoom, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong password exits 1 with one stderr line: no traceback, no password."""
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__USERNAME", "bot-developer")
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__PASSWORD", "wrong-" + PASSWORD)
    assert run_cli("login", "--url", CR) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("streamproc controlroom: error: authenticate failed")
    assert "Traceback" not in captured.err
    assert PASSWORD not in captured.err


def test_missing_config_file_is_a_one_line_error(
    offline: FakeControlRoom, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config path that does not exist is a configuration error: one line, exit 2."""
    assert run_cli("login", "--config", str(tmp_path / "nope.toml")) == 2
    assert "file not found" in capsys.readouterr().err


def test_login_with_a_bearer_token_asks_the_control_room(
    offline: FakeControlRoom, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bearer token is checked with the server: garbage is refused (exit 2, naming
    controlroom.bearer_token, the token never shown); an accepted one logs in."""
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__BEARER_TOKEN", "garbage-Secret-Bearer")
    assert run_cli("login", "--url", CR) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "'controlroom.bearer_token'" in captured.err
    assert "refused" in captured.err
    assert "garbage-Secret-Bearer" not in captured.err
    assert offline.requests, "the Control Room was not asked"
    offline.requests.clear()
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__BEARER_TOKEN", BEARER)
    assert run_cli("login", "--url", CR) == 0
    assert orjson.loads(capsys.readouterr().out)["kind"] == "bearer"
    assert offline.requests


@pytest.mark.parametrize("flag", [True, False])
def test_a_url_with_a_password_in_it_is_refused_before_any_request(
    offline: FakeControlRoom,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: bool,
) -> None:
    """http://user:secret@host is a configuration error naming controlroom.url; the password
    is neither printed nor sent."""
    url = "http://user:url-Secret-Password@cr.example.com"
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__USERNAME", "bot-developer")
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__PASSWORD", PASSWORD)
    if flag:
        assert run_cli("login", "--url", url) == 2
    else:
        monkeypatch.setenv("STREAMPROC_CONTROLROOM__URL", url)
        assert run_cli("login") == 2
    captured = capsys.readouterr()
    assert "'controlroom.url'" in captured.err
    assert "url-Secret-Password" not in captured.out + captured.err
    assert offline.requests == []


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(
    offline: FakeControlRoom, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config file with bytes that are not UTF-8 exits 2 in one line, no traceback."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[controlroom]\nusername = "J\xf6rg"\n')
    assert run_cli("login", "--config", str(path)) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err
    assert "Traceback" not in err
