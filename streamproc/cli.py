"""The ``streamproc`` command: one sub-command per job, each registered by its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)``; it adds its parser and sets ``handler`` to a
# function ``(argparse.Namespace) -> int`` that returns the exit status.
COMMAND_MODULES = (
    "streamproc.processor.command",
    "streamproc.emulator.command",
    "streamproc.controlroom.command",
    "streamproc.demo.command",
    "streamproc.dlq.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamproc",
        description=(
            "Real-time fraud scoring: reads card-transaction events from Kafka, scores each "
            "with an Automation 360 API Task (real-time endpoint) within each allocation's "
            "concurrency budget, and publishes a decision or a dead letter."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
