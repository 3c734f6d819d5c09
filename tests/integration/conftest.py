"""A real control plane for the integration tests: one per session, always stopped.

Outside CI a missing control plane skips these tests with the reason and the build command;
with CI=true it fails them, so a CI run never passes by skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import kubernetes
import pytest

from ome.simulations.cluster import (
    BUILD_COMMAND,
    Binaries,
    ClusterError,
    ClusterSettings,
    LocalCluster,
    MissingBinaries,
    find_binaries,
    go_toolchain,
    synthetic_nodes,
)

# 32 each of H100 8x80GB, A100 8x40GB and L4 4x24GB: 640 GPUs over three zones.
SESSION_NODES = synthetic_nodes(96)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_control_plane() -> Binaries:
    """The binaries, or skip (fail under CI=true) saying what is missing and how to build it."""
    problems = []
    binaries = None
    try:
        binaries = find_binaries()
    except MissingBinaries as exc:
        problems.append(str(exc))
    if in_ci() and go_toolchain() is None:
        problems.append(f"Go toolchain not found on PATH; CI builds the control plane with `{BUILD_COMMAND}` "
                        "and needs Go >= 1.26")
    if problems:
        message = "\n".join(problems)
        if in_ci():
            pytest.fail(f"CI=true: the integration tests need the real control plane.\n{message}", pytrace=False)
        pytest.skip("real control plane unavailable: " + " ".join(line.strip() for line in message.splitlines()))
    assert binaries is not None
    return binaries


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with SESSION_NODES Ready."""
    require_control_plane()
    cluster = LocalCluster(ClusterSettings(directory=tmp_path_factory.mktemp("controlplane")))
    try:
        try:
            cluster.start(SESSION_NODES)
        except ClusterError as exc:
            pytest.fail(f"control plane did not start: {exc}", pytrace=False)
        yield cluster
    finally:
        cluster.stop()


def kube_client(cluster: LocalCluster) -> kubernetes.client.ApiClient:
    """An official-client ApiClient for the cluster (admin, from its kubeconfig)."""
    return kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def api_client(control_plane: LocalCluster) -> Iterator[kubernetes.client.ApiClient]:
    client = kube_client(control_plane)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def core_v1(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(api_client)


@pytest.fixture()
def http(control_plane: LocalCluster) -> Iterator[httpx.Client]:
    """Raw httpx client (admin client certificate) for bulk requests."""
    with control_plane.http() as client:
        yield client


@pytest.fixture()
def namespace(core_v1: kubernetes.client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core_v1.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            core_v1.delete_namespace(name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise


# ---------------------------------------------------------------- helpers for the tests


def pod_manifest(name: str, gpus: int = 0, cpu: str = "100m", memory: str = "64Mi",
                 **spec: Any) -> dict[str, Any]:
    limits = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name.rsplit("-", 1)[0]}},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/serve:1",
                                 "resources": {"limits": limits, "requests": limits}}], **spec},
    }


def create_all(http: httpx.Client, path: str, bodies: list[dict[str, Any]], workers: int = 16) -> None:
    """POST many objects concurrently; raise on the first refusal."""
    def post(body: dict[str, Any]) -> None:
        response = http.post(path, json=body)
        if response.status_code != 201:
            raise AssertionError(f"POST {path} {body['metadata']['name']}: {response.status_code} {response.text}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, bodies))


def list_pods(http: httpx.Client, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    params = {"labelSelector": selector} if selector else {}
    response = http.get(f"/api/v1/namespaces/{namespace}/pods", params=params)
    response.raise_for_status()
    return list(response.json()["items"])


def wait_for(what: str, condition: Callable[[], Any], timeout_s: float, poll_s: float = 0.5) -> Any:
    """Poll until condition() is truthy and return it; fail with `what` and the last value on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}", pytrace=False)
        time.sleep(poll_s)
