"""The ``streamproc`` command line: sub-commands, configuration errors, ``run --check``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import orjson
import pytest

from streamproc import cli, logs

SECRET = "cr-Password-Secret-9"
ADMIN_SECRET = "cr-Admin-Secret-8"
SASL_SECRET = "kafka-Sasl-Secret-7"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMPROC_* from the shell, and no process-wide logging setup.

    ``run`` configures structlog onto stderr; under capsys that stream is closed after the
    test, so the configuration must not outlive it.
    """
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(logs, "configure", lambda *a, **kw: None)


def test_help_lists_every_sub_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``streamproc --help`` lists each job the command can run."""
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    expected = ["run", "emulator", "controlroom"]
    if importlib.util.find_spec("streamproc.demo") is not None:
        expected += ["demo", "produce-sample", "tail"]
    for name in expected:
        assert f"\n    {name} " in text or f"\n    {name}\n" in text, name


def test_run_with_a_missing_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config file that does not exist is a configuration error (exit 2) naming it."""
    missing = tmp_path / "missing.toml"
    assert cli.main(["run", "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "'--config'" in err
    assert "missing.toml" in err


def test_run_with_a_bad_key_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown key in the file is reported by its dotted path, before anything starts."""
    path = tmp_path / "bad.toml"
    path.write_text("[processing]\nmax_in_flihgt = 10\n", encoding="utf-8")
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "processing.max_in_flihgt" in err


def test_run_check_prints_the_settings_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run --check`` prints the effective settings as JSON, secrets masked, and exits 0."""
    path = tmp_path / "prod.toml"
    path.write_text(
        f"""
[kafka]
group_id = "fraud-prod"
security_protocol = "SASL_SSL"
sasl_mechanism = "PLAIN"
sasl_username = "svc"
sasl_password = "{SASL_SECRET}"
[controlroom]
url = "https://cr.example.com"
username = "bot"
admin_username = "admin"
admin_password = "{ADMIN_SECRET}"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("STREAMPROC_CONTROLROOM__PASSWORD", SECRET)
    assert cli.main(["run", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    for secret in (SECRET, ADMIN_SECRET, SASL_SECRET):
        assert secret not in out
    settings = orjson.loads(out)
    assert settings["kafka"]["group_id"] == "fraud-prod"
    assert settings["controlroom"]["password"] == "**********"
    assert settings["controlroom"]["admin_password"] == "**********"
    assert settings["kafka"]["sasl_password"] == "**********"


def test_run_exit_status_follows_how_the_processor_ended(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """run exits 0 after a clean stop, 2 for a config problem at start, 1 for other failures."""
    from streamproc import app
    from streamproc.errors import ConfigError, KafkaDeliveryError

    outcomes: list[BaseException | None] = [
        None,
        ConfigError("kafka", "topic(s) not found on the broker: transactions"),
        KafkaDeliveryError("Local: Message timed out", topic="decisions"),
    ]

    async def fake_run_processor(settings: object, stop: object) -> None:
        error = outcomes.pop(0)
        if error is not None:
            raise error

    monkeypatch.setattr(app, "run_processor", fake_run_processor)
    assert cli.main(["run"]) == 0
    assert cli.main(["run"]) == 2
    assert "configuration error: config key 'kafka': topic(s) not found" in capsys.readouterr().err
    assert cli.main(["run"]) == 1
    assert "delivery to 'decisions' failed" in capsys.readouterr().err
