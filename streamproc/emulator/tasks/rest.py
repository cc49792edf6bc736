"""``API_task_Rest 01 1708026445.bot`` (file 184): a simulated REST call, with no network.

Inputs: ``iStrUrl`` (STRING, required, an ``http://`` or ``https://`` URL) and ``iStrMethod``
(STRING, optional, default ``GET``; one of GET, POST, PUT, PATCH, DELETE, HEAD).
Outputs: ``oNumStatusCode`` (NUMBER) and ``oStrBody`` (STRING, a JSON document).

The "remote" answers deterministically: a URL whose path contains ``/status/<code>`` (100 to
599) answers that code, in the manner of httpbin; otherwise 201 for POST and 200 for the rest.
A 2xx body is ``{"method": ..., "url": ...}``; any other body is ``{"error": <reason>}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from streamproc.core.values import BotValue, ValueType
from streamproc.emulator.tasks.base import (
    ApiTask,
    InputSpec,
    OutputSpec,
    number_out,
    string_out,
    text_input,
)
from streamproc.errors import BotValueError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
_URL = re.compile(r"^https?://[^/\s?#]+", re.IGNORECASE)
_STATUS = re.compile(r"/status/([1-5]\d\d)(?:[/?#]|$)")


class RestTask(ApiTask):
    file_id = 184
    path = "Automation Anywhere\\Bots\\API_task_Rest 01 1708026445.bot"
    summary = "Simulates a REST call (no network): /status/<code> URLs answer that code."
    inputs = (
        InputSpec("iStrUrl", ValueType.STRING, True, "http(s) URL to call"),
        InputSpec("iStrMethod", ValueType.STRING, False, "HTTP method, default GET"),
    )
    outputs = (
        OutputSpec("oNumStatusCode", ValueType.NUMBER, "HTTP status of the simulated call"),
        OutputSpec("oStrBody", ValueType.STRING, "JSON body of the simulated call"),
    )

    @staticmethod
    def _method(inputs: Mapping[str, BotValue]) -> str:
        return (text_input(inputs, "iStrMethod") or "GET").strip().upper()

    def check(self, inputs: Mapping[str, BotValue]) -> None:
        if not _URL.match(text_input(inputs, "iStrUrl") or ""):
            raise BotValueError("botInput.iStrUrl", "expected an http:// or https:// URL")
        if self._method(inputs) not in METHODS:
            raise BotValueError(
                "botInput.iStrMethod", f"unknown method; expected one of {', '.join(METHODS)}"
            )

    def run(self, inputs: Mapping[str, BotValue]) -> dict[str, Any]:
        url = text_input(inputs, "iStrUrl") or ""
        method = self._method(inputs)
        match = _STATUS.search(url)
        status = int(match.group(1)) if match else (201 if method == "POST" else 200)
        if 200 <= status < 300:
            body: dict[str, str] = {"method": method, "url": url}
        else:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown Status"
            body = {"error": reason}
        return {
            "oNumStatusCode": number_out(status),
            "oStrBody": string_out(orjson.dumps(body).decode()),
        }
