"""Connection limits: the cap fits the process's open-file limit."""

from __future__ import annotations

import resource

import orjson
import pytest

from streamproc.emulator import connections
from streamproc.emulator.connections import RESERVED_FILES, canned_error, fit_to_file_limit


class FakeLimits:
    """RLIMIT_NOFILE as getrlimit/setrlimit see it, with a hard limit that cannot be passed."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard

    def getrlimit(self, _which: int) -> tuple[int, int]:
        return self.soft, self.hard

    def setrlimit(self, _which: int, limits: tuple[int, int]) -> None:
        if limits[0] > self.hard:
            raise ValueError("not allowed to raise maximum limit")
        self.soft = limits[0]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> FakeLimits:
    fake = FakeLimits(256, 256)
    monkeypatch.setattr(connections.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(connections.resource, "setrlimit", fake.setrlimit)
    return fake


def test_the_soft_file_limit_is_raised_to_hold_the_cap(limits: FakeLimits) -> None:
    """With room under the hard limit, the soft limit grows to the cap plus a reserve."""
    limits.soft, limits.hard = 1024, 4096
    assert fit_to_file_limit(2000) == 2000
    assert limits.soft == 2000 + RESERVED_FILES


def test_a_cap_beyond_the_file_limit_is_lowered(limits: FakeLimits) -> None:
    """Under a 256 file limit the cap leaves descriptors free to accept and answer with."""
    cap = fit_to_file_limit(512)
    assert cap == 128
    assert cap + RESERVED_FILES <= 256


def test_a_cap_within_the_file_limit_is_kept(limits: FakeLimits) -> None:
    """Nothing changes when the limit already holds the cap."""
    limits.soft = limits.hard = resource.RLIM_INFINITY
    assert fit_to_file_limit(512) == 512


def test_canned_errors_have_the_one_json_shape_and_close() -> None:
    """A canned answer is a complete HTTP response with a {code, message, details} body."""
    raw = canned_error(408, "REQUEST_TIMEOUT", "too slow", {"timeoutSeconds": 5})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert orjson.loads(body) == {
        "code": "REQUEST_TIMEOUT",
        "message": "too slow",
        "details": {"timeoutSeconds": 5},
    }
