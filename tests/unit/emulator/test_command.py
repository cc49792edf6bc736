"""The ``streamproc emulator`` command line: flags, help and start-up errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamproc.emulator import command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamproc")
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["emulator", *argv])


def test_flags_become_settings_overrides() -> None:
    """Only the flags given become overrides, under their settings keys."""
    args = parse("--port", "9000", "--latency-ms", "20", "--latency-jitter-ms", "5",
                 "--error-rate", "0.1", "--token-ttl-seconds", "2", "--no-preallocate",
                 "--log-level", "warning", "--over-limit-status", "503")  # fmt: skip
    assert command.overrides_from_args(args) == {
        "port": 9000,
        "latency_ms": 20.0,
        "latency_jitter_ms": 5.0,
        "error_rate": 0.1,
        "token_ttl_seconds": 2,
        "preallocate": False,
        "log_level": "WARNING",
        "over_limit_status": 503,
    }
    assert command.overrides_from_args(parse()) == {}
    assert parse().handler is command.handle


def test_connection_limit_flags_become_settings_overrides() -> None:
    """The four connection limits can be set from the command line."""
    args = parse("--max-connections", "64", "--header-timeout-seconds", "3",
                 "--body-timeout-seconds", "4", "--keepalive-timeout-seconds", "5")  # fmt: skip
    assert command.overrides_from_args(args) == {
        "max_connections": 64,
        "header_timeout_seconds": 3.0,
        "body_timeout_seconds": 4.0,
        "keepalive_timeout_seconds": 5.0,
    }


def test_help_lists_the_endpoints_and_default_users(capsys: pytest.CaptureFixture[str]) -> None:
    """--help explains the endpoints, the precedence of settings and the default users."""
    with pytest.raises(SystemExit) as info:
        parse("--help")
    assert info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("/hotbot/{botId}/execute", "STREAMPROC_EMULATOR_", "cr-admin", "--public-url"):
        assert fragment in text


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid key fails at start with status 2 and a message naming it."""
    path = tmp_path / "bad.toml"
    path.write_text("port = 'eighty'\n")
    assert command.handle(parse("--config", str(path))) == 2
    assert "config key 'port'" in capsys.readouterr().err


def test_bad_flag_value_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    """An out-of-range flag is reported as the settings key it sets."""
    assert command.handle(parse("--error-rate", "3")) == 2
    assert "behavior.error_rate" in capsys.readouterr().err


def test_a_config_file_that_is_not_utf8_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config file with bytes that are not UTF-8 is a one-line configuration error."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'host = "h\xf6st"\n')
    assert command.handle(parse("--config", str(path))) == 2
    err = capsys.readouterr().err
    assert "config key 'config'" in err
    assert "not UTF-8" in err


@pytest.mark.parametrize(
    ("variable", "text", "named"),
    [
        ("STREAMPROC_EMULATOR_PROT", "8091", "STREAMPROC_EMULATOR_PROT"),
        ("STREAMPROC_EMULATOR_USERS", "not json", "STREAMPROC_EMULATOR_USERS is not valid JSON"),
        ("STREAMPROC_EMULATOR_PORT", "eighty", "STREAMPROC_EMULATOR_PORT"),
    ],
)
def test_a_bad_environment_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    text: str,
    named: str,
) -> None:
    """A misspelt STREAMPROC_EMULATOR_* variable, or malformed JSON in one, fails at start."""
    monkeypatch.setenv(variable, text)
    assert command.handle(parse()) == 2
    assert named in capsys.readouterr().err
