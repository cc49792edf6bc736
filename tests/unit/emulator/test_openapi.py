"""The OpenAPI document covers exactly the route table and is internally consistent."""

from __future__ import annotations

from typing import Any

from streamproc.emulator.openapi import openapi_document
from streamproc.emulator.routes import ROUTES


def test_every_route_has_an_operation_and_nothing_else_is_documented() -> None:
    """The set of (method, path) pairs in the document equals the route table."""
    documented = {
        (method.upper(), path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert documented == {(route.method, route.path) for route in ROUTES}


def test_document_is_openapi_3_1_with_responses_for_each_operation() -> None:
    """Version 3.1, and each operation declares a summary and at least one response."""
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for operations in doc["paths"].values():
        for operation in operations.values():
            assert operation["summary"]
            assert operation["responses"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_every_reference_resolves() -> None:
    """Each $ref points at a schema in components."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_path_parameters_are_declared() -> None:
    """Templated paths declare their parameters."""
    for path, operations in openapi_document()["paths"].items():
        if "{" in path:
            name = path.split("{", 1)[1].split("}", 1)[0]
            for operation in operations.values():
                [param] = [p for p in operation["parameters"] if p["name"] == name]
                assert (param["in"], param["required"], param["schema"]) == (
                    "path", True, {"type": "string"})  # fmt: skip
