from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_streamproc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read STREAMPROC_* variables; the shell running the tests must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
