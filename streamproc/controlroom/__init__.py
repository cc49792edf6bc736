"""Control Room real-time API (API Task "hotbot"): the client and the execute path.

Typed bot values (``StringValue`` and the rest) live in :mod:`streamproc.core.values`.

The public surface::

    async with ControlRoomClient(url, PasswordCredentials("user", "secret")) as cr:
        async for allocation in cr.allocations():
            ...
        transport = HttptoolsExecuteTransport(max_connections=64)
        path = r"Automation Anywhere\\Bots\\Fraud Score API Task"
        session = cr.execution_session(path, transport)
        result = await session.execute({"iStrZipCode": StringValue("76131")}, timeout_s=5.0)
        await transport.aclose()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamproc.controlroom.allocations import AccessDetails, Allocation
    from streamproc.controlroom.auth import AuthToken
    from streamproc.controlroom.client import ControlRoomClient
    from streamproc.controlroom.credentials import (
        ApiKeyCredentials,
        BearerCredentials,
        Credentials,
        PasswordCredentials,
    )
    from streamproc.controlroom.execute import ExecuteResult, ExecuteSession
    from streamproc.controlroom.transport import (
        DEFAULT_TRANSPORT,
        ExecuteTransport,
        RawResponse,
    )

# Loaded on first use: importing one piece (the transport seam, say) does not pull every HTTP
# library in with it.
_HOMES = {
    "AccessDetails": "allocations",
    "Allocation": "allocations",
    "AuthToken": "auth",
    "ControlRoomClient": "client",
    "ApiKeyCredentials": "credentials",
    "BearerCredentials": "credentials",
    "Credentials": "credentials",
    "PasswordCredentials": "credentials",
    "ExecuteResult": "execute",
    "ExecuteSession": "execute",
    "DEFAULT_TRANSPORT": "transport",
    "ExecuteTransport": "transport",
    "RawResponse": "transport",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "DEFAULT_TRANSPORT",
    "AccessDetails",
    "Allocation",
    "ApiKeyCredentials",
    "AuthToken",
    "BearerCredentials",
    "ControlRoomClient",
    "Credentials",
    "ExecuteResult",
    "ExecuteSession",
    "ExecuteTransport",
    "PasswordCredentials",
    "RawResponse",
]
