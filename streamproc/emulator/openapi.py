"""The OpenAPI 3.1 document of every endpoint the emulator serves.

Kept by hand next to the route table; a test checks that every route has an operation here
and that nothing here lacks a route.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from streamproc.core.values import ValueType
from streamproc.emulator.behavior import BehaviorSettings
from streamproc.emulator.listing import DECIMAL_PATTERN, FIELDS, NUMERIC_FIELDS

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **props: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _ok(description: str, schema: Schema | None = None, status: str = "200") -> Schema:
    answer: Schema = {"description": description}
    if schema is not None:
        answer["content"] = {JSON: {"schema": schema}}
    return {status: answer}


def _errors(*statuses: int) -> Schema:
    text = {
        400: "malformed JSON, invalid fields, or both auth headers (or one twice)",
        401: "missing, malformed, forged, expired or logged-out token",
        403: "the user's role does not allow it",
        404: "unknown file or allocation",
        408: "the request body did not arrive in time (body_timeout_seconds); the "
        "connection is closed",
        409: "the file is already allocated",
        413: "body larger than the limit (2 MiB by default)",
        415: "body is not JSON",
        429: "over the allocation's concurrency limit (status configurable, e.g. 503)",
        500: "injected failure (error_rate)",
        503: "injected failure (error_status 503), or the emulator is stopping",
        504: "injected hang reached hang_max_seconds",
    }
    return {
        str(s): {"description": text[s], "content": {JSON: {"schema": _ref("Error")}}}
        for s in statuses
    }


def _op(
    summary: str,
    responses: Schema,
    *,
    body: Schema | None = None,
    auth: bool = True,
    tag: str,
    params: list[Schema] | None = None,
) -> Schema:
    op: Schema = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    op["security"] = [{"XAuthorization": []}, {"Bearer": []}] if auth else []
    return op


def _path_param(name: str, example: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": example,
    }


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NULL = {"type": "null"}
_JAVA_INT_MAX = 2**31 - 1
# A positive id as the Control Room's Java backend reads it: a JSON number or digits.
_POSITIVE_ID: Schema = {
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": _JAVA_INT_MAX},
        {"type": "string", "pattern": "^0{0,3}[1-9][0-9]{0,8}$"},
    ]
}
_FIELDS = sorted(FIELDS)
_NUMERIC_FIELDS = sorted(NUMERIC_FIELDS)
_PAGE_INT: Schema = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": _JAVA_INT_MAX}, _NULL]}


def _behavior() -> Schema:
    """A task's behaviour; every key optional in a change (PUT), all present in answers."""
    schema = BehaviorSettings.model_json_schema()
    for prop in schema["properties"].values():
        prop.pop("title", None)
        prop.pop("default", None)
    schema.pop("title", None)
    return schema


_BEHAVIOR = _behavior()
_BEHAVIOR_KEYS = sorted(_BEHAVIOR["properties"])

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        ("code", "message", "details"),
        code={"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        message=_STR,
        details={"oneOf": [_STR, {"type": "object"}]},
    ),
    "LoginRequest": {
        **_obj(
            ("username",),
            username={"type": "string", "minLength": 1},
            password={**_STR, "description": "exactly one of password and apiKey"},
            apiKey={**_STR, "description": "40 characters; always a multi-session token"},
            multipleLogin={"type": "boolean", "default": False},
        ),
        "oneOf": [{"required": ["password"]}, {"required": ["apiKey"]}],
    },
    "User": _obj(
        ("id", "username", "roles"),
        id=_INT,
        email=_STR,
        username=_STR,
        firstName=_STR,
        lastName=_STR,
        roles={"type": "array", "items": _obj(name=_STR, id=_INT, version=_INT)},
    ),
    "LoginResponse": _obj(("token", "user"), token=_STR, user=_ref("User")),
    "TokenBody": _obj(token={**_STR, "description": "default: the token of the request"}),
    "TokenResponse": _obj(("token",), token=_STR),
    "ValidResponse": _obj(("valid",), valid={"type": "boolean"}),
    "Allocation": _obj(
        ("fileId",),
        fileId=_POSITIVE_ID,
        runAsUserOrNone={
            "oneOf": [*_POSITIVE_ID["oneOf"], _NULL],
            "description": "default: the apitaskrunner user (null: the default)",
        },
        concurrencyLimit={
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 100_000},
                {"type": "string", "pattern": "^0{0,3}[1-9][0-9]{0,4}$"},
                _NULL,
            ],
            "description": "most concurrent real-time executes, 1 to 100000 (default 1)",
        },
    ),
    "Filter": {
        "type": "object",
        "description": "a comparison of a field with a value, and/or/not over operands, or "
        "NONE; numeric fields compare as numbers; nested at most 16 levels deep",
        "required": ["operator"],
        "oneOf": [
            {"properties": {"operator": {"const": "NONE"}}},
            {
                "properties": {
                    "operator": {"enum": ["eq", "ne", "lt", "le", "gt", "ge"]},
                    "field": {"enum": _FIELDS},
                    "value": {"oneOf": [_STR, {"type": "number"}]},
                },
                "required": ["field", "value"],
                "if": {"properties": {"field": {"enum": _NUMERIC_FIELDS}}},
                "then": {
                    "properties": {
                        "value": {
                            "oneOf": [
                                {"type": "string", "pattern": DECIMAL_PATTERN},
                                {"type": "number"},
                            ]
                        }
                    }
                },
            },
            {
                "properties": {
                    "operator": {"const": "substring"},
                    "field": {"enum": _FIELDS},
                    "value": {"oneOf": [_STR, {"type": "number"}]},
                },
                "required": ["field", "value"],
            },
            {
                "properties": {
                    "operator": {"enum": ["and", "or"]},
                    "operands": {"type": "array", "minItems": 1, "items": _ref("Filter")},
                },
                "required": ["operands"],
            },
            {
                "properties": {
                    "operator": {"const": "not"},
                    "operands": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1,
                        "items": _ref("Filter"),
                    },
                },
                "required": ["operands"],
            },
        ],
    },
    "ListRequest": _obj(
        filter={"oneOf": [_ref("Filter"), _NULL]},
        sort={
            "oneOf": [
                {
                    "type": "array",
                    "items": _obj(
                        ("field",),
                        field={"enum": _FIELDS},
                        direction={"enum": ["asc", "desc"], "default": "asc"},
                    ),
                },
                _NULL,
            ]
        },
        page={
            "oneOf": [
                _obj(
                    offset=_PAGE_INT,
                    length={**_PAGE_INT, "description": "0 or null: 100"},
                ),
                _NULL,
            ]
        },
    ),
    "ListResponse": _obj(
        ("list", "page"),
        list={
            "type": "array",
            "items": _obj(
                ("fileId", "filePath", "fileName", "runAsUserOrNone", "concurrencyLimit"),
                fileId=_STR,
                filePath=_STR,
                fileName=_STR,
                runAsUserOrNone=_STR,
                concurrencyLimit=_INT,
            ),
        },
        page=_obj(("offset", "total", "totalFilter"), offset=_INT, total=_INT, totalFilter=_INT),
    ),
    "AccessDetailsRequest": _obj(
        ("botRepositoryPath",),
        botRepositoryPath={"type": "array", "items": _STR, "minItems": 1, "maxItems": 100},
    ),
    "AccessDetailsResponse": _obj(
        ("accessDetails", "errors"),
        accessDetails={
            "type": "object",
            "additionalProperties": _obj(
                ("url", "headers"),
                url=_STR,
                headers=_obj(("X-Authorization",), **{"X-Authorization": _STR}),
            ),
        },
        errors={"type": "object", "additionalProperties": _STR},
    ),
    "BotValue": {
        "type": "object",
        "description": "a typed value: {type, <lower-case type>: payload}; type defaults to "
        "STRING; NUMBER and BOOLEAN payloads are strings; LIST, DICTIONARY and TABLE nest at "
        "most 64 levels. Which variables an API Task takes, and of which types, is its "
        "contract (GET /emulator/v1/repository); a botInput that breaks it is a 400.",
        "properties": {
            "type": {"enum": [t.value for t in ValueType]},
            "string": _STR,
            "number": {"oneOf": [_STR, {"type": "number"}]},
            "boolean": {"oneOf": [_STR, {"type": "boolean"}]},
            "list": {"type": "array", "items": _ref("BotValue")},
            "dictionary": {
                "type": "array",
                "items": _obj(("key", "value"), key=_STR, value=_ref("BotValue")),
            },
            "table": _obj(
                ("schema",),
                schema={"type": "array", "items": _obj(("name",), name=_STR)},
                rows={
                    "type": "array",
                    "items": _obj(("values",), values={"type": "array", "items": _ref("BotValue")}),
                },
            ),
        },
    },
    "ExecuteRequest": _obj(
        botInput={"oneOf": [{"type": "object", "additionalProperties": _ref("BotValue")}, _NULL]}
    ),
    "ExecuteResponse": _obj(
        ("hotBotResult",),
        hotBotResult=_obj(
            ("botOutput",),
            botOutput={"type": "object", "additionalProperties": _ref("BotValue")},
        ),
    ),
    "Stats": _obj(
        ("allocations",),
        allocations={
            "type": "array",
            "items": _obj(
                (
                    "fileId",
                    "filePath",
                    "concurrencyLimit",
                    "inFlight",
                    "maxInFlight",
                    "executed",
                    "rejected",
                    "failed",
                    "invalid",
                    "lastRequestId",
                    "lastAttempt",
                    "lastTraceparent",
                ),
                fileId=_STR,
                filePath=_STR,
                concurrencyLimit=_INT,
                inFlight=_INT,
                maxInFlight=_INT,
                executed=_INT,
                rejected=_INT,
                failed=_INT,
                invalid=_INT,
                lastRequestId={"type": ["string", "null"]},
                lastAttempt={"type": ["string", "null"]},
                lastTraceparent={"type": ["string", "null"]},
            ),
        },
    ),
    "Behavior": {**_BEHAVIOR, "required": _BEHAVIOR_KEYS},
    "TaskBehavior": {
        **_BEHAVIOR,
        "description": "a task's behaviour and its file id",
        "properties": {
            "fileId": {"type": "string", "pattern": "^[0-9]+$"},
            **_BEHAVIOR["properties"],
        },
        "required": ["fileId", *_BEHAVIOR_KEYS],
    },
    "BehaviorPatch": {
        **_BEHAVIOR,
        "description": "the keys to change (null is not a value); error_rate + hang_rate, "
        "with the keys not given taken from the task's current behaviour, must not exceed 1",
    },
    "Repository": _obj(("tasks",), tasks={"type": "array", "items": {"type": "object"}}),
}


def _paths() -> dict[str, dict[str, Schema]]:
    login = _op(
        "Authenticate with a password or an API key",
        {**_ok("token and user", _ref("LoginResponse")), **_errors(400, 401, 403, 408, 413, 415)},
        body=_body(_ref("LoginRequest")),
        auth=False,
        tag="authentication",
    )
    refresh = _op(
        "Refresh a live token",
        {**_ok("a new token", _ref("TokenResponse")), **_errors(400, 401, 403, 408, 413, 415)},
        body=_body(_ref("TokenBody"), required=False),
        tag="authentication",
    )
    behavior_params = [_path_param("fileId", "201")]
    return {
        "/v1/authentication": {"post": login},
        "/v2/authentication": {"post": login},
        "/v1/authentication/token": {
            "post": refresh,
            "get": _op(
                "Validate a token",
                {**_ok("whether the token is accepted", _ref("ValidResponse")), **_errors(400)},
                auth=False,
                tag="authentication",
                params=[
                    {
                        "name": "token",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
            ),
        },
        "/v2/authentication/token": {"post": refresh},
        "/v1/authentication/logout": {
            "post": _op(
                "Log out: the token is refused from now on",
                {"204": {"description": "logged out"}, **_errors(400, 401, 403, 408, 413, 415)},
                body=_body(_ref("TokenBody"), required=False),
                tag="authentication",
            )
        },
        "/orchestrator/v1/hotbot/config/create": {
            "put": _op(
                "Create an API Task allocation (admin)",
                {
                    **_ok("the request, echoed", _ref("Allocation")),
                    **_errors(400, 401, 403, 404, 408, 409, 413, 415),
                },
                body=_body(_ref("Allocation")),
                tag="allocations",
            )
        },
        "/orchestrator/v1/hotbot/config": {
            "post": _op(
                "List API Task allocations (admin)",
                {
                    **_ok("a page of allocations", _ref("ListResponse")),
                    **_errors(400, 401, 403, 408, 413, 415),
                },
                body=_body(_ref("ListRequest"), required=False),
                tag="allocations",
            )
        },
        "/orchestrator/v1/hotbot/config/accessdetails": {
            "post": _op(
                "Execution URL and token per repository path (unknown paths under errors)",
                {
                    **_ok("access details and errors", _ref("AccessDetailsResponse")),
                    **_errors(400, 401, 403, 408, 413, 415),
                },
                body=_body(_ref("AccessDetailsRequest")),
                tag="allocations",
            )
        },
        "/hotbot/{botId}/execute": {
            "post": _op(
                "Execute the API Task in real time (execution token as X-Authorization)",
                {
                    **_ok("the task's outputs", _ref("ExecuteResponse")),
                    **_errors(400, 401, 404, 408, 413, 415, 429, 500, 503, 504),
                },
                body=_body(_ref("ExecuteRequest"), required=False),
                tag="execute",
                params=[_path_param("botId", "5")],
            )
        },
        "/emulator/v1/health": {
            "get": _op("Liveness", _ok("ok", _obj(status=_STR)), auth=False, tag="emulator")
        },
        "/emulator/v1/stats": {
            "get": _op(
                "Counters per allocation", _ok("stats", _ref("Stats")), auth=False, tag="emulator"
            )
        },
        "/emulator/v1/stats/reset": {
            "post": _op(
                "Zero the counters",
                _ok("stats after reset", _ref("Stats")),
                auth=False,
                tag="emulator",
            )
        },
        "/emulator/v1/behavior": {
            "get": _op(
                "Every task's behaviour, by file id",
                _ok("behaviours", {"type": "object", "additionalProperties": _ref("Behavior")}),
                auth=False,
                tag="emulator",
            )
        },
        "/emulator/v1/behavior/{fileId}": {
            "get": _op(
                "A task's behaviour",
                {**_ok("behaviour", _ref("TaskBehavior")), **_errors(404)},
                auth=False,
                tag="emulator",
                params=behavior_params,
            ),
            "put": _op(
                "Change some of a task's behaviour",
                {
                    **_ok("the whole behaviour", _ref("TaskBehavior")),
                    **_errors(400, 404, 408, 413, 415),
                },
                body=_body(_ref("BehaviorPatch")),
                auth=False,
                tag="emulator",
                params=behavior_params,
            ),
        },
        "/emulator/v1/repository": {
            "get": _op(
                "Declared inputs and outputs of each API Task",
                _ok("tasks", _ref("Repository")),
                auth=False,
                tag="emulator",
            )
        },
        "/emulator/v1/openapi.json": {
            "get": _op(
                "This document", _ok("OpenAPI 3.1", {"type": "object"}), auth=False, tag="emulator"
            )
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamproc Control Room emulator",
            "version": "1",
            "description": "Automation 360 API Task real-time endpoints (authentication, "
            "allocations, accessdetails, execute) plus emulator controls. Every error body "
            "is {code, message, details}. Emulator-control endpoints need no authentication.",
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "XAuthorization": {"type": "apiKey", "in": "header", "name": "X-Authorization"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
