"""The image, built and run for real with podman (no registry: a Debian base from mmdebstrap), and the API's
Kubernetes Deployment run by `podman play kube` against the local PostgreSQL.

Slow (marker `container`): the first build installs every dependency (about 6 minutes here); later builds
reuse that layer and rebuild only the code's (under a minute). Skipped, with the reason, where podman, runc
or mmdebstrap are missing (Debian's packages; `deploy/README.md`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import temporary_postgres_database

pytestmark = [pytest.mark.container, pytest.mark.slow]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE = "localhost/hwnas:test"


def _podman_env() -> dict[str, str]:
    """CONTAINERS_CONF and the podman flags exactly as deploy/build-image.sh sets them."""
    out = subprocess.run(["bash", "-c", f"source {DEPLOY / 'build-image.sh'} --env-only && echo $CONTAINERS_CONF"],
                         capture_output=True, text=True, check=True)
    return {**os.environ, "CONTAINERS_CONF": out.stdout.strip()}


PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, *, timeout_s: float, logs: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} never answered within {timeout_s} s; logs:\n{logs()}")


@pytest.fixture(scope="module")
def image() -> str:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install podman runc mmdebstrap (see deploy/README.md)")
    began = time.monotonic()
    built = subprocess.run(["bash", str(DEPLOY / "build-image.sh")], env={**os.environ, "HWNAS_IMAGE": IMAGE},
                           capture_output=True, text=True, timeout=2400, stdin=subprocess.DEVNULL)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    print(f"image built in {time.monotonic() - began:.0f} s")  # noqa: T201  (shown with -s: the test's cost)
    return IMAGE


def test_the_image_runs_each_role_as_a_non_root_user(image: str) -> None:
    env = _podman_env()
    helped = subprocess.run([*PODMAN, "run", "--rm", image, "hwnas", "--help"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "search" in helped.stdout, helped.stderr[-2000:]
    who = subprocess.run([*PODMAN, "run", "--rm", image, "id", "-u"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert who.stdout.strip() == "10001", who.stdout + who.stderr  # the image's user, not root
    inspected = json.loads(subprocess.run([*PODMAN, "image", "inspect", image], env=env, capture_output=True,
                                          text=True, check=True).stdout)[0]
    assert not [v for v in inspected["Config"].get("Env", []) if "TOKEN=" in v or "PASSWORD" in v]  # no secret


def test_the_api_in_the_image_answers_its_health_check(image: str) -> None:
    env, port, name = _podman_env(), _free_port(), f"hwnas-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([*PODMAN, "run", "-d", "--name", name, "--network", "host", "-e", f"HWNAS_PORT={port}",
                    "-e", "HWNAS_HOST=127.0.0.1", image, "serve", "--no-controller"], env=env, check=True,
                   capture_output=True, timeout=120)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}/api/v1/health", timeout_s=120, logs=lambda: subprocess.run(
            [*PODMAN, "logs", name], env=env, capture_output=True, text=True).stderr[-3000:])
        assert health["status"] == "ok", health
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], env=env, capture_output=True, timeout=120)


def test_the_api_deployment_runs_under_podman_play_kube(image: str, tmp_path: Path, postgres_server: str) -> None:
    """deploy/k8s/api.yaml's Deployment and Service (and storage.yaml's claim), as written but for the image
    name, the pull policy and the port (host networking here, so a free one), with a Secret for a fresh
    database on the local PostgreSQL. The Ingress needs a controller that podman has not: left out."""
    env, port = _podman_env(), _free_port()
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "api.yaml").read_text()) if d]
    docs += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "storage.yaml").read_text()) if d]
    docs = [d for d in docs if d["kind"] in ("Deployment", "Service", "PersistentVolumeClaim")]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    volume_name = f"hwnas-test-{uuid.uuid4().hex[:8]}"  # a claim of its own, removed afterwards
    next(d for d in docs if d["kind"] == "PersistentVolumeClaim")["metadata"]["name"] = volume_name
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = volume_name
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"], container["imagePullPolicy"] = image, "Never"
    args = container["args"]
    args[args.index("--port") + 1] = str(port)
    container.pop("ports")  # host networking publishes nothing: podman refuses port mappings with it
    for probe in ("readinessProbe", "livenessProbe"):
        container[probe]["httpGet"]["port"] = port
    secret_name = f"hwnas-test-{uuid.uuid4().hex[:8]}"  # the Secret, as podman 4.3 reads one: its data as JSON
    for variable in container["env"]:
        if "valueFrom" in variable:
            variable["valueFrom"]["secretKeyRef"]["name"] = secret_name
    with temporary_postgres_database("hwnas_kube") as database_url:
        values = {"database-url": database_url.replace("+psycopg", ""), "ray-auth-token": "x" * 64}
        secret = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}  # podman 4.3's form
        (tmp_path / "secret.json").write_text(json.dumps(secret))
        subprocess.run([*PODMAN, "secret", "create", secret_name, str(tmp_path / "secret.json")], env=env,
                       check=True, capture_output=True, timeout=60)
        manifest = tmp_path / "kube.yaml"
        manifest.write_text(yaml.safe_dump_all(docs))
        played = subprocess.run([*PODMAN, "play", "kube", "--network", "host", str(manifest)], env=env,
                                capture_output=True, text=True, timeout=300)
        try:
            assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-3000:]
            health = _wait_healthy(f"http://127.0.0.1:{port}/api/v1/health", timeout_s=180,
                                   logs=lambda: subprocess.run([*PODMAN, "pod", "logs", "--tail", "40",
                                                                f"{deployment['metadata']['name']}-pod"],
                                                               env=env, capture_output=True, text=True).stdout)
            assert health["status"] == "ok" and health.get("database") in (None, "ok"), health
        finally:
            subprocess.run([*PODMAN, "play", "kube", "--down", str(manifest)], env=env, capture_output=True,
                           timeout=300)
            subprocess.run([*PODMAN, "volume", "rm", "-f", volume_name], env=env, capture_output=True, timeout=120)
            subprocess.run([*PODMAN, "secret", "rm", secret_name], env=env, capture_output=True, timeout=60)
