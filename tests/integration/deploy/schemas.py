"""JSON schemas for kubeconform, from two registry packages, with no download at test time.

* Kubernetes: the strict schemas that PyPI's ``kubernetes-validate`` ships for each release
  (built from the Kubernetes OpenAPI document). They name themselves with https ``$id``s and
  refer to their shared definitions as ``/api/_definitions.json`` under those; here the ids
  are dropped and the references made relative, so kubeconform finds the definitions next to
  the schema file instead of on the network.
* KEDA: each CRD's ``openAPIV3Schema`` (from the Go module github.com/kedacore/keda/v2),
  made strict as kubeconform's own ``openapi2jsonschema`` does: an object that lists its
  properties accepts no others.

Files are named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` expects, e.g.
``deployment-apps-v1.json`` and ``scaledobject-keda-v1alpha1.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "v1.33.0"
SCHEMA_LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
_SHARED = '"/api/_definitions.json#'


def write_kubernetes_schemas(target: Path, version: str = KUBERNETES_VERSION) -> int:
    source = files("kubernetes_validate") / "kubernetes-json-schema" / f"{version}-local-strict"
    count = 0
    for entry in source.iterdir():
        if entry.name.endswith(".json"):
            schema = json.loads(entry.read_text().replace(_SHARED, '"_definitions.json#'))
            # Without its https $id, a schema's relative references resolve next to its file.
            schema.pop("$id", None)
            (target / entry.name).write_text(json.dumps(schema))
            count += 1
    return count


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _strict(value) for key, value in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def write_crd_schemas(target: Path, crd_files: list[Path]) -> list[str]:
    written = []
    for crd_file in crd_files:
        crd = yaml.safe_load(crd_file.read_text())
        spec = crd["spec"]
        kind = spec["names"]["kind"].lower()
        group = spec["group"].split(".")[0]
        for version in spec["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            name = f"{kind}-{group}-{version['name']}.json"
            (target / name).write_text(json.dumps(schema))
            written.append(name)
    return written
