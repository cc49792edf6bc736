"""The demo's sub-commands: registered, documented, and strict about their flags."""

from __future__ import annotations

import pytest

from streamproc.cli import build_parser, main


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (
            "demo",
            ["--config", "--rate", "--duration", "--emulator-port", "--partitions", "--latency-ms"],
        ),
        ("produce-sample", ["--bootstrap", "--topic", "--count", "--rate", "--duration", "--seed"]),
        ("tail", ["--bootstrap", "--topic", "--from-beginning", "--dlq", "--json"]),
    ],
)
def test_each_command_explains_its_flags(
    command: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--help names every flag the command takes, and exits 0."""
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text


def test_produce_sample_asks_how_much_before_touching_the_broker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --count, --rate or --duration it says what to give, exit status 2."""
    assert main(["produce-sample", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "--count N, or --rate R --duration S" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--malformed-ratio", "1.5"],
        ["demo", "--rate", "0"],
        ["produce-sample", "--count", "0"],
        ["tail", "--limit", "-1"],
    ],
)
def test_out_of_range_values_are_usage_errors(argv: list[str]) -> None:
    """A ratio above 1, a zero rate or a count below 1 is refused by the parser."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


def test_demo_defaults_match_the_documented_ones() -> None:
    """200 events/s, 6 partitions, 20 ms latency, 2% malformed, logs under .demo."""
    args = build_parser().parse_args(["demo"])
    assert (args.rate, args.partitions, args.latency_ms, args.malformed_ratio) == (
        200.0,
        6,
        20.0,
        0.02,
    )
    assert str(args.log_dir) == ".demo"
    assert args.use_emulator is True
