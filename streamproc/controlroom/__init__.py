"""Control Room real-time API (API Task "hotbot"): client, typed values, errors.

The public surface::

    async with ControlRoomClient(url, PasswordCredentials("user", "secret")) as cr:
        async for allocation in cr.allocations():
            ...
        transport = make_execute_transport(max_connections=64)
        path = r"Automation Anywhere\\Bots\\Fraud Score API Task"
        session = cr.execution_session(path, transport)
        result = await session.execute({"iStrZipCode": StringValue("76131")}, timeout_s=5.0)
        await transport.aclose()
"""

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
    make_execute_transport,
)

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
    "make_execute_transport",
]
