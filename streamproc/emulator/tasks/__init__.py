"""The API Tasks the emulator can execute, one module per task."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamproc.emulator.tasks.base import ApiTask, InputSpec, OutputSpec
from streamproc.emulator.tasks.echo import EchoTask
from streamproc.emulator.tasks.fraud import FraudScoreTask
from streamproc.emulator.tasks.rest import RestTask
from streamproc.emulator.tasks.strings import StringTask
from streamproc.emulator.tasks.zipcode import ZipCodeTask

__all__ = ["ApiTask", "InputSpec", "OutputSpec", "default_tasks"]


def default_tasks(clock: Callable[[], float] = time.time) -> tuple[ApiTask, ...]:
    """Fresh instances (the fraud task keeps per-card state) in file id order."""
    return (EchoTask(), ZipCodeTask(), StringTask(), RestTask(), FraudScoreTask(clock=clock))
