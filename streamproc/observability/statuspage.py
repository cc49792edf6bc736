"""The status page over HTTP: ``/`` and its assets, ``/status`` (one snapshot as JSON) and
``/status/events`` (a snapshot a second as server-sent events).

The page is plain HTML, CSS and JavaScript shipped in the package (``static/``), read once
when the app is built; it loads nothing from anywhere else. Server-sent events rather than a
websocket: the data flows one way, browsers reconnect by themselves, and any HTTP tool can read
the stream (``curl -N http://127.0.0.1:9108/status/events``).

A stream lives until its reader goes away or the server stops: stopping ends every open
stream at once, so a browser left open never holds up the processor's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import orjson
from aiohttp import web

from streamproc.errors import KafkaAdminError
from streamproc.kafka.admin import GroupDescription
from streamproc.logs import get_logger
from streamproc.observability.status import StatusBoard

log = get_logger("observability.status")

EVENTS_INTERVAL_S = 1.0
_ASSETS = {
    "/": ("status.html", "text/html"),
    "/status.css": ("status.css", "text/css"),
    "/status.js": ("status.js", "text/javascript"),
}
# The page is served by the processor itself: nothing may load from elsewhere, and nothing
# may frame it.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

MemberLookup = Callable[[], GroupDescription]


@dataclass(frozen=True, slots=True)
class StatusPage:
    """What the page shows (``board``), and how to ask the coordinator who this member is."""

    board: StatusBoard
    member_lookup: MemberLookup | None = None


class _Streams:
    """The open event streams' shared state: the stop signal, the coordinator lookup."""

    def __init__(self, board: StatusBoard, lookup: MemberLookup | None) -> None:
        self.board = board
        self.lookup = lookup
        self.closing = asyncio.Event()
        self.looking: asyncio.Task[None] | None = None

    def look_up_member(self) -> None:
        """Ask the group's coordinator who this member is, off the loop, when it may help."""
        if self.lookup is None or (self.looking is not None and not self.looking.done()):
            return
        if self.board.wants_member_lookup():
            self.looking = asyncio.get_running_loop().create_task(self._look_up(self.lookup))

    async def _look_up(self, lookup: MemberLookup) -> None:
        try:
            description: GroupDescription | None = await asyncio.to_thread(lookup)
        except KafkaAdminError as exc:
            log.debug("group_lookup_failed", error=str(exc))
            description = None
        self.board.member_looked_up(description)


def add_status_routes(app: web.Application, page: StatusPage) -> None:
    """Serve ``page`` on ``app``."""
    board = page.board
    static = files("streamproc.observability") / "static"
    bodies = {
        path: (static.joinpath(name).read_bytes(), content_type)
        for path, (name, content_type) in _ASSETS.items()
    }
    streams = _Streams(board, page.member_lookup)

    async def asset(request: web.Request) -> web.Response:
        body, content_type = bodies[request.path]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    async def snapshot(_request: web.Request) -> web.Response:
        streams.look_up_member()
        return web.Response(body=orjson.dumps(board.snapshot()), content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            while not streams.closing.is_set():
                streams.look_up_member()
                await response.write(b"data: " + orjson.dumps(board.snapshot()) + b"\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(streams.closing.wait(), EVENTS_INTERVAL_S)
        except ConnectionResetError:
            pass  # the reader went away
        return response

    async def close_streams(_app: web.Application) -> None:
        streams.closing.set()
        if streams.looking is not None:
            streams.looking.cancel()
            await asyncio.gather(streams.looking, return_exceptions=True)

    for path in _ASSETS:
        app.router.add_get(path, asset)
    app.router.add_get("/status", snapshot)
    app.router.add_get("/status/events", events)
    app.on_shutdown.append(close_streams)
