"""``streamproc dlq replay``'s flags: every one explained, every bad one refused with exit 2."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from streamproc import cli, logs

SASL_SECRET = "kafka-Sasl-Secret-7"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMPROC_* from the shell, and no process-wide logging setup."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(logs, "configure", lambda *a, **kw: None)


def replay_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dlq = sub.choices["dlq"]
    dlq_sub = next(a for a in dlq._actions if isinstance(a, argparse._SubParsersAction))
    replay: argparse.ArgumentParser = dlq_sub.choices["replay"]
    return replay


def test_every_flag_is_explained() -> None:
    """Each option of ``dlq replay`` has a help text, and the epilog gives the exit statuses."""
    parser = replay_parser()
    options = [a for a in parser._actions if a.option_strings]
    assert len(options) >= 15
    unexplained = [a.option_strings[0] for a in options if not (a.help and len(a.help) > 15)]
    assert unexplained == []
    assert "exit status: 0 done, 1 a failure" in (parser.epilog or "")


def test_the_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    """``streamproc --help`` lists ``dlq``."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "\n    dlq " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--since", "yesterday"], "argument --since: 'yesterday' is neither a time ago"),
        (["--offsets", "a..b"], "argument --offsets: 'a..b' is not FIRST..LAST"),
        (["--partition", "-1"], "argument --partition: '-1' is not a partition number"),
        (["--max-replays", "0"], "argument --max-replays: must be at least 1"),
        (["--rate", "0"], "argument --rate: must be a positive number"),
        (["--rate", "inf"], "argument --rate: must be a positive number"),
        (["--stage", "parse"], "argument --stage: invalid choice: 'parse'"),
        (["--dry-run", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed flag value stops at once with status 2 and says which flag and why."""
    with pytest.raises(SystemExit) as info:
        cli.main(["dlq", "replay", *flags])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--since", "1h", "--until", "2h"], "--since must be earlier than --until"),
        (["--offsets", "9..3"], "--offsets: the first offset is after the last"),
        (
            ["--from", "transactions.dlq", "--to", "transactions.dlq"],
            "--to 'transactions.dlq' is the dead-letter topic itself",
        ),
        (["--to", "transactions.dlq"], "is the dead-letter topic itself"),
    ],
)
def test_inconsistent_flags_exit_2(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags that together select nothing, or would replay into the dead-letter topic, are
    refused with status 2 before any connection."""
    assert cli.main(["dlq", "replay", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_bad_config_exits_2_naming_the_key_and_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad value in the config file is reported by its dotted key; secrets are not echoed."""
    path = tmp_path / "bad.toml"
    path.write_text('[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "svc"\n')
    monkeypatch.setenv("STREAMPROC_KAFKA__SASL_PASSWORD", SASL_SECRET)
    assert cli.main(["dlq", "replay", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "configuration error" in captured.err
    assert "config key 'kafka'" in captured.err
    assert SASL_SECRET not in captured.out + captured.err
