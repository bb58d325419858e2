"""The deployment files (deploy/): every Kubernetes manifest is valid against the Kubernetes schemas (offline,
`kubernetes-validate`), the RayCluster holds what KubeRay and hwnas need, the compose file wires every role to
the same image, database, Ray head and artifacts, and nothing secret is in any of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.33.0"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.mark.parametrize("name,doc", [d for d in _documents() if d[1]["kind"] != "RayCluster"],
                         ids=lambda v: v if isinstance(v, str) else v.get("kind", ""))
def test_each_kubernetes_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises with the field and the rule


def test_the_raycluster_has_a_head_and_one_worker_group_per_device() -> None:
    (cluster,) = [doc for _, doc in _documents() if doc["kind"] == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["enableInTreeAutoscaling"] is True
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head coordinates, runs no trials
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    device = groups["device-cpu-1t"]
    assert '\\"cpu-1t\\": 1' in device["rayStartParams"]["resources"] or '"cpu-1t": 1' in device["rayStartParams"]["resources"]
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for spec in [head["template"]["spec"], *(g["template"]["spec"] for g in groups.values())]:
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["HWNAS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "hwnas"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "ray-auth-token"
        assert container["resources"]["limits"] and container["resources"]["requests"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}
        assert spec["securityContext"]["runAsNonRoot"] is True
    # The pod templates are valid Kubernetes pod specs too.
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for template in [head["template"], *(g["template"] for g in groups.values())]:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                      "spec": template["spec"]}, K8S_VERSION, strict=True)


def test_the_api_is_probed_on_its_health_endpoint_and_reaches_the_ray_head() -> None:
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _documents()}
    (container,) = docs[("Deployment", "hwnas-api")]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] \
        == "/api/v1/health"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HWNAS_RAY_ADDRESS"] == "hwnas-head-svc:6379"  # KubeRay's head Service for cluster `hwnas`
    assert docs[("PersistentVolumeClaim", "hwnas-artifacts")]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_compose_file_wires_every_role_alike() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "ray-head", "worker", "worker-cpu-1t", "controller", "api"} <= set(services)
    hwnas = {name: s for name, s in services.items() if name != "postgres"}
    images = {s["image"] for s in hwnas.values()}
    assert len(images) == 1  # one image, every role
    for name, service in hwnas.items():
        env = service["environment"]
        assert env["HWNAS_RAY_ADDRESS"] == "ray-head:6379" and env["HWNAS_DATA_DIR"] == "/data"
        assert env["HWNAS_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["HWNAS_DATABASE_URL"]
        assert service["volumes"] == ["artifacts:/data"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker-cpu-1t"]["command"][-2:] == ["--device", "cpu-1t"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/api/v1/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert set(compose["volumes"]) == {"postgres", "artifacts"}


def test_no_secret_is_written_into_the_deployment_files() -> None:
    texts = {p.name: p.read_text() for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in (".yaml", ".sh", "")}
    texts["Containerfile"] = (DEPLOY / "Containerfile").read_text()
    for name, text in texts.items():
        assert not re.search(r"hwnas_[A-Za-z0-9_-]{20,}", text), name  # an API token
        assert not re.search(r"(?i)password\s*[:=]\s*(?!\$\{)(?!CHANGE-ME)[^\s{]+", text.replace(
            "POSTGRES_PASSWORD", "")), name
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "${RAY_AUTH_TOKEN:?" in compose and "${POSTGRES_PASSWORD:?" in compose  # from deploy/.env, required


def test_the_compose_file_follows_the_compose_specification() -> None:
    """Against the Compose Specification's JSON schema, as docker-compose 1.29.2 ships it
    (`compose/config/compose_spec.json`, Apache-2.0; vendored: no schema registry is reachable here)."""
    import json

    import jsonschema

    schema = json.loads((Path(__file__).parent / "compose_spec.json").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    broken = {**compose, "services": {**compose["services"], "api": {**compose["services"]["api"], "portz": [1]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)
