"""deploy/k8s: valid for Kubernetes and KEDA (kubeconform), and in step with the processor.

kubeconform (``go install``, by ``scripts/tools.sh kubeconform``) validates every manifest in
strict mode against the Kubernetes schemas of PyPI's kubernetes-validate and KEDA's CRD
schemas (the Go module github.com/kedacore/keda/v2); a broken copy must be refused, so the
schemas really are applied. Then the manifests are read with the processor's own settings
model: the ConfigMap's TOML loads, every STREAMPROC_* variable names a setting, the probes and
the grace period fit what the processor does, and KEDA scales the group the processor joins.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamproc.config import Settings, load_settings
from tests.fixtures.kafka import REPO_ROOT
from tests.integration.deploy.schemas import (
    SCHEMA_LOCATION,
    write_crd_schemas,
    write_kubernetes_schemas,
)

pytestmark = pytest.mark.integration

K8S = REPO_ROOT / "deploy" / "k8s"
CONFIG_FILE = "streamproc.toml"


def tool(name: str) -> str:
    """The path ``scripts/tools.sh NAME`` installed (or found)."""
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "tools.sh"), name],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/tools.sh {name} failed:\n{result.stderr[-3000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return tool("kubeconform")


@pytest.fixture(scope="session")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the Kubernetes and the KEDA schemas, named as kubeconform looks them up."""
    folder = tmp_path_factory.mktemp("schemas")
    assert write_kubernetes_schemas(folder) > 500
    crds = sorted(Path(tool("keda-crds")).glob("keda.sh_*.yaml"))
    written = write_crd_schemas(folder, crds)
    assert "scaledobject-keda-v1alpha1.json" in written
    assert "triggerauthentication-keda-v1alpha1.json" in written
    return folder


def validate(kubeconform: str, schemas: Path, target: Path) -> tuple[int, list[dict[str, Any]]]:
    """kubeconform's exit status and its verdict on each resource."""
    result = subprocess.run(
        [
            kubeconform,
            "-strict",
            "-verbose",
            "-output",
            "json",
            "-schema-location",
            str(schemas / SCHEMA_LOCATION),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, orjson.loads(result.stdout)["resources"]


def documents() -> dict[str, dict[str, Any]]:
    """Every manifest by kind."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


def test_manifests_are_valid_kubernetes_and_keda_resources(kubeconform: str, schemas: Path) -> None:
    """Every manifest passes kubeconform's strict validation, none skipped for want of a schema."""
    status, resources = validate(kubeconform, schemas, K8S)
    verdicts = {r["kind"]: r["status"] for r in resources}
    assert status == 0, resources
    assert verdicts == {
        "ConfigMap": "statusValid",
        "Secret": "statusValid",
        "Deployment": "statusValid",
        "PodDisruptionBudget": "statusValid",
        "ScaledObject": "statusValid",
        "TriggerAuthentication": "statusValid",
    }


def _rename_port(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPorts"] = 9108


def _number_in_trigger(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500


def _unknown_auth_field(doc: dict[str, Any]) -> None:
    doc["spec"]["secretTargetRefs"] = doc["spec"].pop("secretTargetRef")


def _string_budget(doc: dict[str, Any]) -> None:
    doc["spec"]["maxUnavailable"] = ["one"]


@pytest.mark.parametrize(
    ("kind", "breakage", "path"),
    [
        ("Deployment", _rename_port, "/spec/template/spec/containers/0/ports/0"),
        ("ScaledObject", _number_in_trigger, "/spec/triggers/0/metadata/lagThreshold"),
        ("TriggerAuthentication", _unknown_auth_field, "/spec"),
        ("PodDisruptionBudget", _string_budget, "/spec/maxUnavailable"),
    ],
)
def test_a_broken_manifest_is_refused(  # noqa: PLR0917 - fixtures and parameters
    kubeconform: str,
    schemas: Path,
    tmp_path: Path,
    kind: str,
    breakage: Callable[[dict[str, Any]], None],
    path: str,
) -> None:
    """A copy with one schema violation fails validation, naming the resource and the field."""
    doc = documents()[kind]
    breakage(doc)
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(doc))
    status, resources = validate(kubeconform, schemas, tmp_path)
    assert status == 1
    [resource] = resources
    assert resource["kind"] == kind
    assert resource["status"] == "statusInvalid"
    # Nested violations are summed up under a parent path; the message names the field.
    assert f"at '{path}'" in resource["msg"], resource["msg"]


@pytest.fixture
def deployed_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The ConfigMap's TOML with the Deployment's variables set, read as the processor would:
    an unknown variable or key fails here as it would at start."""
    docs = documents()
    toml = docs["ConfigMap"]["data"][CONFIG_FILE]
    # The mounted files exist in the pod; here they are placed under tmp_path.
    for mount in container(docs)["volumeMounts"]:
        toml = toml.replace(mount["mountPath"], str(tmp_path / mount["name"]))
        (tmp_path / mount["name"]).mkdir()
    (tmp_path / "kafka-ca" / "ca.crt").write_text("a CA certificate\n")
    (tmp_path / "streamproc.toml").write_text(toml)
    for name in os.environ:
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    for variable in container(docs)["env"]:
        monkeypatch.setenv(variable["name"], "from-the-pod")
    return load_settings(tmp_path / "streamproc.toml")


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [only] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_the_deployment_runs_the_processor_as_configured(deployed_settings: Settings) -> None:
    """Config from the ConfigMap, secrets as STREAMPROC_* variables from the Secret, probes
    on the metrics port, a grace period longer than the drain, resource requests."""
    docs = documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    main = container(docs)
    settings = deployed_settings
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password is not None
    assert settings.controlroom.password is not None
    assert settings.controlroom.admin_password is not None
    secret_keys = set(docs["Secret"]["stringData"])
    for variable in main["env"]:
        ref = variable["valueFrom"].get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == docs["Secret"]["metadata"]["name"]
            assert ref["key"] in secret_keys
    assert f"/etc/streamproc/config/{CONFIG_FILE}" in main["args"]
    [port] = main["ports"]
    assert port["containerPort"] == settings.observability.http_port
    assert settings.observability.http_host == "0.0.0.0"  # probes come from outside
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    # The drain, then the final commit and leaving the group, before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] >= settings.processing.drain_timeout_s + 15
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "replicas" not in docs["Deployment"]["spec"], "KEDA owns the replica count"


def test_keda_scales_the_processors_group_up_to_the_partition_count(
    deployed_settings: Settings,
) -> None:
    """The ScaledObject reads the lag of the group and topic the processor uses, logs in as the
    processor does, and never scales past the input topic's partitions."""
    docs = documents()
    scaled = docs["ScaledObject"]
    kafka = deployed_settings.kafka
    [trigger] = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert scaled["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert meta["bootstrapServers"] == kafka.bootstrap_servers
    assert meta["consumerGroup"] == kafka.group_id
    assert meta["topic"] == kafka.input_topic
    # KEDA names SCRAM-SHA-512 "scram_sha512".
    assert meta["sasl"] == {"SCRAM-SHA-512": "scram_sha512"}[kafka.sasl_mechanism or ""]
    assert meta["tls"] == "enable"
    assert meta["allowIdleConsumers"] == "false"
    partitions = int(scaled["metadata"]["annotations"]["streamproc/input-topic-partitions"])
    assert scaled["spec"]["maxReplicaCount"] == partitions
    auth = docs["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = docs["Secret"]
    by_parameter = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(by_parameter) == {"username", "password", "ca"}
    for ref in by_parameter.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    env = {v["name"]: v["valueFrom"].get("secretKeyRef", {}) for v in container(docs)["env"]}
    assert by_parameter["password"]["key"] == env["STREAMPROC_KAFKA__SASL_PASSWORD"]["key"]
    assert by_parameter["username"]["key"] == env["STREAMPROC_KAFKA__SASL_USERNAME"]["key"]


def test_disruptions_take_one_replica_at_a_time() -> None:
    """The PodDisruptionBudget selects exactly the Deployment's pods and lets one go at once."""
    docs = documents()
    pdb = docs["PodDisruptionBudget"]["spec"]
    deployment = docs["Deployment"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"] == deployment["selector"]
    assert deployment["selector"]["matchLabels"].items() <= (
        deployment["template"]["metadata"]["labels"].items()
    )
