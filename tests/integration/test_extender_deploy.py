"""deploy/scheduler's KubeSchedulerConfiguration in a real kube-scheduler ("ome-scheduler"),
beside the stock one, with the extender: whole GPUs, shares, a CPU pod that opts in, a pod
no node can ever hold (our reason reaches the pod), and a preemption decided by the extender."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ome.domain import Node
from ome.simulations.cluster import ClusterSettings, LocalCluster, find_binaries

from .conftest import require_control_plane
from .test_extender_replay import clear_not_ready_taints

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
NS = "deploy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deploy_config(kubeconfig: Path, extender_url: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "deploy" / "scheduler" / "scheduler-config.yaml").read_text())
    (cm,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    config["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    config["leaderElection"] = {"leaderElect": False}  # no kube-system leases in this cluster's RBAC setup
    config["extenders"][0]["urlPrefix"] = extender_url
    return dict(config)


def start_ome_scheduler(tmp_path: Path, kubeconfig: Path, extender_url: str) -> subprocess.Popen[bytes]:
    """A real kube-scheduler ("ome-scheduler") with deploy/scheduler's configuration, calling the extender."""
    config = tmp_path / "ome-scheduler.yaml"
    config.write_text(yaml.safe_dump(deploy_config(kubeconfig, extender_url)))
    kc = str(kubeconfig)
    with (tmp_path / "ome-scheduler.log").open("ab") as log:
        return subprocess.Popen(
            [str(find_binaries().kube_scheduler), f"--config={config}", "--bind-address=127.0.0.1",
             f"--secure-port={free_port()}", f"--authentication-kubeconfig={kc}",
             f"--authorization-kubeconfig={kc}", f"--cert-dir={tmp_path / 'certs'}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def pod(name: str, *, gpus: int = 0, milli: int | None = None, priority_class: str = "", **spec: Any) -> dict[str, Any]:
    limits = {"cpu": "1", "memory": "1Gi"}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    if milli is not None:
        limits["ome.io/gpu-milli"] = str(milli)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                            "spec": {"schedulerName": "ome-scheduler", "terminationGracePeriodSeconds": 0,
                                     "containers": [{"name": "m", "image": "registry.invalid/x:1",
                                                     "resources": {"limits": limits, "requests": limits}}], **spec}}
    if priority_class:
        body["spec"]["priorityClassName"] = priority_class
    return body


def wait(http: httpx.Client, name: str, want: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        p = r.json() if r.status_code == 200 else {}
        if want == "bound" and p.get("spec", {}).get("nodeName"):
            return p
        if want == "gone" and r.status_code == 404:
            return {}
        if want == "unschedulable" and any(c.get("reason") == "Unschedulable" for c in p.get("status", {}).get("conditions") or ()):
            return p
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: not {want} after {timeout_s}s: {p.get('status')}", pytrace=False)
        time.sleep(0.2)


def test_deploy_config_in_a_real_kube_scheduler(tmp_path: Path) -> None:
    require_control_plane()
    nodes = [Node("gpu-a", 32_000, 256_000, "A100", 2, 40960), Node("gpu-b", 32_000, 256_000, "A100", 2, 40960),
             Node("gpu-c", 32_000, 256_000, "A100", 2, 40960, labels=(("pool", "preempt"),))]
    cluster = LocalCluster(ClusterSettings(directory=tmp_path / "cluster", controller_manager=False))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cluster.start(nodes)
        kc = str(cluster.kubeconfig)
        with (tmp_path / "extender.log").open("ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "ome.scheduler", "serve", "--port", str(port),
                                           "--kubeconfig", kc], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        procs.append(start_ome_scheduler(tmp_path, cluster.kubeconfig, f"http://127.0.0.1:{port}"))
        with cluster.http() as http:
            clear_not_ready_taints(http, [n.name for n in nodes])
            http.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
            for name, value in (("low", 1), ("high", 1000)):
                http.post("/apis/scheduling.k8s.io/v1/priorityclasses",
                          json={"metadata": {"name": name}, "value": value}).raise_for_status()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            keep_off_c = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "DoesNotExist"}]}]}}}}
            bodies = [pod("whole", gpus=1, **keep_off_c), pod("cpu", milli=0, **keep_off_c)]
            bodies += [pod(f"share{k}", milli=400, **keep_off_c) for k in range(4)]
            for body in bodies:
                http.post(f"/api/v1/namespaces/{NS}/pods", json=body).raise_for_status()
                wait(http, body["metadata"]["name"], "bound")
            placed = {b["metadata"]["name"]: wait(http, b["metadata"]["name"], "bound") for b in bodies}
            assert "ome.io/gpu-index" not in placed["cpu"]["metadata"].get("annotations", {})
            use: dict[tuple[str, str], int] = {}
            for name, p in placed.items():
                if name == "cpu":
                    continue
                per = 1000 if name == "whole" else 400
                for g in p["metadata"]["annotations"]["ome.io/gpu-index"].split(","):
                    use[(p["spec"]["nodeName"], g)] = use.get((p["spec"]["nodeName"], g), 0) + per
            assert max(use.values()) <= 1000 and sum(use.values()) == 2600
            # Shares pack: four 400s on at most three GPUs (two by two where they fit), never one each.
            assert len([k for k, v in use.items() if v < 1000]) <= 3

            # Hostile input, straight at the extender and through the scheduler: clear 4xx answers,
            # and the pods after it still get scheduled (the preemption below).
            ext = f"http://127.0.0.1:{port}"
            assert httpx.post(f"{ext}/filter", content=b"{oops").status_code == 400
            assert httpx.post(f"{ext}/bind", json={"PodName": "x", "PodNamespace": NS, "PodUID": "u",
                                                   "Node": "no-such-node"}).status_code == 404
            absurd = pod("absurd", milli=5000)
            assert httpx.post(f"{ext}/filter", json={"Pod": absurd, "NodeNames": ["gpu-a"]}).status_code == 422
            http.post(f"/api/v1/namespaces/{NS}/pods", json=absurd).raise_for_status()

            never = pod("h100", gpus=1)
            never["metadata"]["annotations"] = {"ome.io/gpu-models": "H100"}
            http.post(f"/api/v1/namespaces/{NS}/pods", json=never).raise_for_status()
            p = wait(http, "h100", "unschedulable")
            message = next(c["message"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
            assert "can never hold" in message, message

            on_c = {"nodeSelector": {"pool": "preempt"}}
            for name, cls in (("low1", "low"), ("low2", "high")):
                http.post(f"/api/v1/namespaces/{NS}/pods", json=pod(name, gpus=1, priority_class=cls, **on_c)).raise_for_status()
                wait(http, name, "bound")
            http.post(f"/api/v1/namespaces/{NS}/pods", json=pod("vip", gpus=1, priority_class="high", **on_c)).raise_for_status()
            # low2 has the same priority as vip: only low1 can be a victim.
            wait(http, "low1", "gone", timeout_s=90)
            vip = wait(http, "vip", "bound", timeout_s=90)
            assert vip["spec"]["nodeName"] == "gpu-c"
            assert http.get(f"/api/v1/namespaces/{NS}/pods/low2").json()["spec"]["nodeName"] == "gpu-c"
            absurd_now = http.get(f"/api/v1/namespaces/{NS}/pods/absurd").json()
            assert not absurd_now["spec"].get("nodeName")  # refused (422), retried with back-off, never placed
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert 'ome_extender_errors_total{reason="bad_request",verb="filter"}' in metrics
            assert 'ome_extender_decisions_total{outcome="candidates",verb="preempt"}' in metrics
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
        cluster.stop()
