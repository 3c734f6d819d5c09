"""End-to-end checks of the local control plane: real etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, and kwok nodes.

The tests that start clusters of their own come first, so they run before the session
cluster exists and do not compete with it for the two cores.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
import yaml
from cryptography import x509
from kubernetes.utils import parse_quantity
from cryptography.x509.oid import NameOID

from ome.domain import Node

from ome.simulations._traces import NODE_FILE, TRACE_DIR_ENV
from ome.simulations.cluster import _config, _launcher, _pki
from ome.simulations.cluster import (
    GPU_MILLI_RESOURCE,
    GPU_RESOURCE,
    LABEL_CAPACITY_TYPE,
    LABEL_POOL,
    LABEL_PRODUCT,
    LABEL_ZONE,
    ClusterError,
    ClusterSettings,
    ComponentError,
    LocalCluster,
    MissingBinaries,
    find_binaries,
    manifest,
    running_processes,
    stop_directory,
    synthetic_nodes,
    with_derived_placement,
)

from .conftest import SESSION_NODES, create_all, list_pods, pod_manifest, require_control_plane, wait_for

# The 60 s ready budget is measured by benchmarks/bench_cluster_up.py (JSON), not asserted here.


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is `folder` (the launcher starts every component there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == folder.resolve() and _alive(int(proc.name)):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


# ------------------------------------------------------------------ offline (no binaries needed)


def test_scheduler_config_wires_the_extender(tmp_path: Path) -> None:
    config = _config.scheduler_config(tmp_path / "kubeconfig", "http://127.0.0.1:9999/scheduler/")
    assert config["clientConnection"]["kubeconfig"] == str(tmp_path / "kubeconfig")
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["percentageOfNodesToScore"] == 100
    [ext] = config["extenders"]
    assert ext["urlPrefix"] == "http://127.0.0.1:9999/scheduler"
    assert (ext["filterVerb"], ext["prioritizeVerb"], ext["bindVerb"], ext["preemptVerb"]) == (
        "filter", "prioritize", "bind", "preempt")
    assert ext["nodeCacheCapable"] is True
    assert ext["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False},
                                       {"name": "ome.io/gpu-milli", "ignoredByScheduler": True}]
    assert "extenders" not in _config.scheduler_config(tmp_path / "kubeconfig")


def test_kwok_config_is_configuration_then_stages(tmp_path: Path) -> None:
    stages = []
    for name in ("node-initialize", "pod-ready"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\n")
        stages.append(path)
    docs = list(yaml.safe_load_all(_config.kwok_config(stages)))
    assert docs[0]["kind"] == "KwokConfiguration"
    assert docs[0]["options"]["manageAllNodes"] is True and docs[0]["options"]["cidr"] == "10.244.0.0/16"
    assert [d["metadata"]["name"] for d in docs[1:]] == ["node-initialize", "pod-ready"]


def test_node_manifest() -> None:
    [h100] = [n for n in synthetic_nodes(3) if n.gpu_model == "H100"]
    body = manifest(h100, taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    labels, status = body["metadata"]["labels"], body["status"]
    assert labels[LABEL_PRODUCT] == "H100" and labels["nvidia.com/gpu.memory"] == "81920"
    assert labels["nvidia.com/gpu.count"] == "8" and labels[LABEL_POOL] == "h100"
    assert labels[LABEL_CAPACITY_TYPE] == "on-demand" and labels[LABEL_ZONE] == "zone-a"
    assert status["capacity"] == status["allocatable"]
    assert status["capacity"][GPU_RESOURCE] == "8" and status["capacity"][GPU_MILLI_RESOURCE] == "8000"
    assert status["capacity"]["cpu"] == "192" and status["capacity"]["memory"] == "2097152Mi"
    assert body["spec"]["taints"] == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    unknown = manifest(Node("g2-0", 96000, 1024, gpu_model="G2", gpu_count=8, pool="g2"))
    assert "nvidia.com/gpu.memory" not in unknown["metadata"]["labels"]


def test_derived_placement_is_deterministic() -> None:
    nodes = [Node(f"openb-node-{i:04d}", 1000, 1024, gpu_model="T4", gpu_count=2) for i in range(300)]
    first, second = with_derived_placement(nodes), with_derived_placement(nodes)
    assert first == second
    assert {n.zone for n in first} == {"zone-a", "zone-b", "zone-c"}
    assert 0.15 < sum(n.capacity_type == "spot" for n in first) / len(first) < 0.35
    kept = Node("x", 1000, 1024, zone="eu-1", capacity_type="spot")
    assert with_derived_placement([kept]) == [kept]


def test_pki_admin_is_system_masters(tmp_path: Path) -> None:
    pki = _pki.generate(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(pki.apiserver_cert.read_bytes())
    admin.verify_directly_issued_by(ca)
    serving.verify_directly_issued_by(ca)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    ips = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips


def test_missing_binaries_name_the_build_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OME_CONTROLPLANE_BIN", str(tmp_path))
    with pytest.raises(MissingBinaries, match="bash hack/build-controlplane.sh") as caught:
        find_binaries()
    assert "kube-apiserver" in str(caught.value)


def test_down_stops_only_processes_it_started(tmp_path: Path) -> None:
    sleep = Path(shutil.which("sleep") or "/bin/sleep").resolve()
    ours = subprocess.Popen([str(sleep), "60"], start_new_session=True)
    other = subprocess.Popen([str(sleep), "60"], start_new_session=True)
    try:
        (tmp_path / "cluster.json").write_text(json.dumps({"processes": [
            {"name": "kwok", "pid": ours.pid, "binary": str(sleep)},
            {"name": "etcd", "pid": other.pid, "binary": "/not/what/runs/there"},  # a recycled pid
        ]}))
        assert running_processes(tmp_path) == ["kwok"]
        assert stop_directory(tmp_path) == ["kwok"]
        assert ours.wait(timeout=10) is not None
        assert other.poll() is None
        assert not (tmp_path / "cluster.json").exists()
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_start_refuses_a_folder_in_use_and_leaves_its_pid_file(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    for stage in ("node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml",
                  "pod/fast/pod-delete.yaml"):
        (fake / "kwok-stages" / stage).parent.mkdir(parents=True, exist_ok=True)
        (fake / "kwok-stages" / stage).write_text("")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        (fake / name).write_text("#!/bin/sh\nexit 1\n")
        (fake / name).chmod(0o755)
    sleep = Path(shutil.which("sleep") or "/bin/sleep").resolve()
    other = subprocess.Popen([str(sleep), "60"], start_new_session=True)
    folder = tmp_path / "cluster"
    folder.mkdir()
    pid_file = folder / "cluster.json"
    pid_file.write_text(json.dumps({"processes": [{"name": "etcd", "pid": other.pid, "binary": str(sleep)}]}))
    try:
        with pytest.raises(ClusterError, match="already runs"):
            LocalCluster(ClusterSettings(directory=folder, binaries_dir=fake)).start()
        assert pid_file.exists() and other.poll() is None
    finally:
        other.kill()
        other.wait()


# ------------------------------------------------------------------ clusters of their own


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_cli_openb_cluster_up_then_down(tmp_path: Path) -> None:
    """`ome cluster up --nodes-from openb --detach`: 1,213 kwok GPU nodes Ready; `down` stops all."""
    require_control_plane()
    trace = os.environ.get(TRACE_DIR_ENV)
    if not trace or not (Path(trace) / NODE_FILE).is_file():
        pytest.skip(f"${TRACE_DIR_ENV} does not hold {NODE_FILE}")
    folder = tmp_path / "openb"
    cli = [sys.executable, "-c", "from ome.simulations.cluster.cli import cluster_app; cluster_app()"]
    began = time.monotonic()
    up = subprocess.run([*cli, "up", "--nodes-from", "openb", "--detach", "--dir", str(folder)],
                        capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - began
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        kubeconfig = Path(up.stdout.strip().splitlines()[-1])
        assert kubeconfig == folder / "kubeconfig"
        # The CLI has exited; the detached components still run.
        assert set(running_processes(folder)) == {"etcd", "kube-apiserver", "kube-controller-manager",
                                                  "kube-scheduler", "kwok"}
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        with client:  # raw JSON: building 1,213 typed models would take longer than the check
            raw = kubernetes.client.CoreV1Api(client).list_node(_preload_content=False)
            nodes = json.loads(raw.data)["items"]
        ready = [n for n in nodes if {"type": "Ready", "status": "True"}.items()
                 <= next(c for c in n["status"]["conditions"] if c["type"] == "Ready").items()]
        assert len(ready) == 1213
        assert {n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes} >= {"T4", "P100", "G2", "V100M32"}
        print(f"\nopenb cluster ready in {elapsed:.1f}s (1213 nodes)")
    finally:
        pids = json.loads((folder / "cluster.json").read_text())["processes"] if (folder / "cluster.json").exists() else []
        down = subprocess.run([*cli, "down", "--dir", str(folder)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
    assert not [p for p in pids if _alive(p["pid"])]
    assert _processes_in(folder) == []


@pytest.mark.integration
def test_start_failure_names_component_and_stops_the_rest(tmp_path: Path) -> None:
    """A component that dies at start: the error names it and shows its log; etcd is stopped again."""
    binaries = require_control_plane()
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages"):
        (fake / name).symlink_to(binaries.directory / name)
    apiserver = fake / "kube-apiserver"
    apiserver.write_text("#!/bin/sh\necho 'E0101 boom: invalid flag --pretend' >&2\nexit 3\n")
    apiserver.chmod(0o755)
    cluster = LocalCluster(ClusterSettings(directory=tmp_path / "cluster", binaries_dir=fake))
    with pytest.raises(ComponentError) as caught:
        cluster.start()
    assert caught.value.component == "kube-apiserver"
    assert "exited with code 3" in str(caught.value)
    assert "boom: invalid flag --pretend" in str(caught.value)
    assert _processes_in(tmp_path / "cluster") == []


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_start_retries_when_a_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port taken between picking and binding: the start goes again on fresh ports."""
    require_control_plane()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        real = _launcher._free_ports
        picks = iter([[squatter.getsockname()[1], *real(5)]])  # the first etcd client port is taken
        monkeypatch.setattr(_launcher, "_free_ports", lambda count: next(picks, None) or real(count))
        steps: list[str] = []
        cluster = LocalCluster(ClusterSettings(directory=tmp_path / "cluster", controller_manager=False))
        try:
            cluster.start(step=steps.append)
            assert cluster.ready()
        finally:
            cluster.stop()
    assert any("etcd found its port taken" in step for step in steps), steps
    assert _processes_in(tmp_path / "cluster") == []


_CHILD = """
import sys, time
from pathlib import Path
from ome.simulations.cluster import ClusterSettings, LocalCluster
LocalCluster(ClusterSettings(directory=Path(sys.argv[1]), controller_manager=False)).start()
print("READY", flush=True)
time.sleep(600)
"""


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_component_outlives_its_parent(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM: the handler stops the cluster. SIGKILL: the kernel kills the children (PDEATHSIG)."""
    require_control_plane()
    folder = tmp_path / "cluster"
    parent = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip() == "READY", parent.stderr.read() if parent.stderr else ""
        pids = [p["pid"] for p in json.loads((folder / "cluster.json").read_text())["processes"]]
        assert len(pids) == 4 and all(_alive(pid) for pid in pids)
        parent.send_signal(sig)
        assert parent.wait(timeout=60) == -sig
        wait_for("components to exit", lambda: not [pid for pid in pids if _alive(pid)], timeout_s=15, poll_s=0.1)
        assert _processes_in(folder) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        stop_directory(folder)


class _FakeExtender(BaseHTTPRequestHandler):
    """Filter keeps only the node named `chosen`; bind POSTs the Binding; records every verb.

    kube-scheduler encodes ExtenderArgs and ExtenderBindingArgs with Go field names ("Pod",
    "NodeNames", "PodName", ...): the types in k8s.io/kube-scheduler/extender/v1 carry no json
    tags. It decodes replies case-insensitively, so lower-case reply keys work.
    """

    calls: list[tuple[str, dict[str, Any]]] = []
    chosen: str = ""
    cluster: LocalCluster | None = None

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        verb = self.path.rsplit("/", 1)[-1]
        type(self).calls.append((verb, body))
        if verb == "filter":
            names = body.get("NodeNames") or []
            keep = [n for n in names if n == self.chosen]
            reply: Any = {"nodenames": keep, "failedNodes": {n: "not chosen" for n in names if n not in keep},
                          "error": ""}
        elif verb == "prioritize":
            reply = [{"host": n, "score": 10 if n == self.chosen else 0} for n in body.get("NodeNames") or []]
        elif verb == "bind":
            assert self.cluster is not None
            with self.cluster.http() as client:
                response = client.post(
                    f"/api/v1/namespaces/{body['PodNamespace']}/pods/{body['PodName']}/binding",
                    json={"apiVersion": "v1", "kind": "Binding",
                          "metadata": {"name": body["PodName"], "uid": body["PodUID"]},
                          "target": {"apiVersion": "v1", "kind": "Node", "name": body["Node"]}})
            reply = {"error": "" if response.status_code == 201 else response.text}
        else:  # preempt: no victims
            reply = {"nodeNameToMetaVictims": {}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture()
def fake_extender() -> Iterator[tuple[str, type[_FakeExtender]]]:
    handler = type("Extender", (_FakeExtender,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/scheduler", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_scheduler_calls_the_extender(tmp_path: Path, fake_extender: tuple[str, type[_FakeExtender]]) -> None:
    """--extender URL: kube-scheduler sends GPU pods to the extender (filter, prioritize, bind)."""
    require_control_plane()
    url, handler = fake_extender
    nodes = synthetic_nodes(3, prefix="ext")
    handler.chosen = nodes[2].name
    settings = ClusterSettings(directory=tmp_path / "cluster", extender_url=url, controller_manager=False)
    with LocalCluster(settings) as cluster:
        handler.cluster = cluster
        cluster.add_nodes(nodes)
        config = (cluster.directory / "scheduler.yaml").read_text()
        assert "ome.io/gpu-milli" in config and "nodeCacheCapable: true" in config
        with cluster.http() as http:
            create_all(http, "/api/v1/namespaces/default/pods",
                       [pod_manifest("gpu-0", gpus=1), pod_manifest("cpu-0")])
            pods = wait_for("both pods Running", lambda: len(_running(list_pods(http, "default"))) == 2 and
                            list_pods(http, "default"), timeout_s=60)
    placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
    assert placed["gpu-0"] == handler.chosen
    verbs = Counter(verb for verb, _ in handler.calls)
    assert verbs["filter"] >= 1 and verbs["bind"] == 1
    # Only pods asking for a managed resource go to the extender; it gets names only (node cache).
    filters = [body for verb, body in handler.calls if verb == "filter"]
    assert all(body["Pod"]["metadata"]["name"] == "gpu-0" for body in filters)
    assert all(body.get("Nodes") is None and len(body["NodeNames"]) == 3 for body in filters)


# ------------------------------------------------------------------ the session cluster


@pytest.mark.integration
def test_nodes_carry_gpu_resources_and_labels(core_v1: kubernetes.client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core_v1.list_node(label_selector="scheduling.ome.io/simulated=true").items}
    for expected in SESSION_NODES:
        node = nodes[expected.name]
        assert node.status.allocatable[GPU_RESOURCE] == str(expected.gpu_count)
        assert parse_quantity(node.status.capacity[GPU_MILLI_RESOURCE]) == expected.gpu_count * 1000  # "8k"
        labels = node.metadata.labels
        assert labels[LABEL_PRODUCT] == expected.gpu_model
        assert labels["nvidia.com/gpu.memory"] == str(expected.gpu_memory_mib)
        assert labels["nvidia.com/gpu.count"] == str(expected.gpu_count)
        assert labels[LABEL_CAPACITY_TYPE] == expected.capacity_type
        assert labels[LABEL_ZONE] == expected.zone
        assert labels[LABEL_POOL] == expected.pool
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_500_gpu_pods_run_without_overcommit(http: httpx.Client, namespace: str) -> None:
    """The stock scheduler places 500 GPU pods (600 of 640 GPUs); kwok runs them; no node over-committed."""
    pods = [pod_manifest(f"one-{i:03d}", gpus=1) for i in range(400)]
    pods += [pod_manifest(f"two-{i:03d}", gpus=2) for i in range(100)]
    began = time.monotonic()
    create_all(http, f"/api/v1/namespaces/{namespace}/pods", pods)
    running = wait_for("500 Running pods", lambda: len(r := _running(list_pods(http, namespace))) == 500 and r,
                       timeout_s=240, poll_s=1.0)
    print(f"\n500 GPU pods Running {time.monotonic() - began:.1f}s after the first POST")
    allocatable = {n.name: n.gpu_count for n in SESSION_NODES}
    used: dict[str, int] = defaultdict(int)
    for pod in running:
        node = pod["spec"]["nodeName"]
        assert node in allocatable, f"{pod['metadata']['name']} on unknown node {node}"
        used[node] += int(pod["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE])
        assert pod["status"].get("podIP", "").startswith("10.244.")
    assert sum(used.values()) == 600
    over = {node: (gpus, allocatable[node]) for node, gpus in used.items() if gpus > allocatable[node]}
    assert not over, f"over-committed nodes (used, allocatable): {over}"


def _deployment(name: str, replicas: int, gpus: int = 0, **spec: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_manifest(name, gpus=gpus, **spec)["spec"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_deployment_scales_from_0_to_20(apps_v1: kubernetes.client.AppsV1Api, http: httpx.Client,
                                        namespace: str) -> None:
    apps_v1.create_namespaced_deployment(namespace, _deployment("web", replicas=0))
    apps_v1.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 20}})
    wait_for("20 Running pods", lambda: len(_running(list_pods(http, namespace, "app=web"))) == 20, timeout_s=120)
    wait_for("deployment status 20 available",
             lambda: (apps_v1.read_namespaced_deployment_status("web", namespace).status.available_replicas or 0) == 20,
             timeout_s=60)


_TEST_TAINT = {"key": "ome.io/test", "value": "node-loss", "effect": "NoSchedule"}


def _isolated_nodes(control_plane: LocalCluster, prefix: str, count: int) -> list[str]:
    """H100 nodes only this test's pods can use (taint + label), so other tests' pods stay off them."""
    nodes = [n.with_labels(**{"ome.io/test": prefix}) for n in synthetic_nodes(3 * count, prefix=prefix)
             if n.gpu_model == "H100"][:count]
    control_plane.add_nodes(nodes, taints=[_TEST_TAINT])
    return [n.name for n in nodes]


def _node_loss_deployment(prefix: str) -> dict[str, Any]:
    toleration = {"key": "ome.io/test", "operator": "Equal", "value": "node-loss", "effect": "NoSchedule"}
    return _deployment(prefix, replicas=6, gpus=2, nodeSelector={"ome.io/test": prefix}, tolerations=[toleration])


def _replaced_elsewhere(http: httpx.Client, namespace: str, app: str, gone: str) -> list[dict[str, Any]] | None:
    pods = list_pods(http, namespace, f"app={app}")
    running = _running(pods)
    if any(p["spec"].get("nodeName") == gone for p in pods) or len(running) != 6:
        return None
    return running


def _six_running(control_plane: LocalCluster, apps_v1: kubernetes.client.AppsV1Api, http: httpx.Client,
                 namespace: str, app: str) -> tuple[list[str], str]:
    """Three isolated nodes running the app's 6 replicas: (their names, the busiest one)."""
    names = _isolated_nodes(control_plane, app, 3)
    apps_v1.create_namespaced_deployment(namespace, _node_loss_deployment(app))
    pods = wait_for("6 Running", lambda: len(r := _running(list_pods(http, namespace, f"app={app}"))) == 6 and r,
                    timeout_s=60)
    return names, Counter(p["spec"]["nodeName"] for p in pods).most_common(1)[0][0]


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_deleting_a_node_moves_its_pods(control_plane: LocalCluster, apps_v1: kubernetes.client.AppsV1Api,
                                        core_v1: kubernetes.client.CoreV1Api, http: httpx.Client,
                                        namespace: str) -> None:
    """Node deleted outright: KCM's pod GC deletes its orphaned pods (40 s quarantine, 20 s period),
    then the ReplicaSet's replacements land on the remaining nodes."""
    names, victim = _six_running(control_plane, apps_v1, http, namespace, "gone")
    began = time.monotonic()
    core_v1.delete_node(victim)
    running = wait_for(f"pods of {victim} replaced", lambda: _replaced_elsewhere(http, namespace, "gone", victim),
                       timeout_s=150, poll_s=1.0)
    print(f"\npods of deleted node {victim} replaced after {time.monotonic() - began:.1f}s (pod GC)")
    assert {p["spec"]["nodeName"] for p in running} <= set(names) - {victim}


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_noexecute_taint_moves_pods_fast(control_plane: LocalCluster, apps_v1: kubernetes.client.AppsV1Api,
                                         http: httpx.Client, namespace: str) -> None:
    """Spot reclaim as a taint: taint-eviction deletes the pods at once, kwok completes the deletion."""
    names, victim = _six_running(control_plane, apps_v1, http, namespace, "reclaim")
    began = time.monotonic()
    taints = [_TEST_TAINT, {"key": "ome.io/reclaimed", "value": "spot", "effect": "NoExecute"}]
    http.patch(f"/api/v1/nodes/{victim}", json={"spec": {"taints": taints}},
               headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    running = wait_for(f"pods of {victim} replaced", lambda: _replaced_elsewhere(http, namespace, "reclaim", victim),
                       timeout_s=60)
    print(f"\npods of tainted node {victim} replaced after {time.monotonic() - began:.1f}s (taint eviction)")
    assert {p["spec"]["nodeName"] for p in running} <= set(names) - {victim}


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_namespace_deletion_completes(apps_v1: kubernetes.client.AppsV1Api, core_v1: kubernetes.client.CoreV1Api,
                                      http: httpx.Client) -> None:
    name = "doomed"
    core_v1.create_namespace({"metadata": {"name": name}})
    core_v1.create_namespaced_config_map(name, {"metadata": {"name": "settings"}, "data": {"k": "v"}})
    apps_v1.create_namespaced_deployment(name, _deployment("svc", replicas=3, gpus=1))
    wait_for("3 Running", lambda: len(_running(list_pods(http, name, "app=svc"))) == 3, timeout_s=60)
    began = time.monotonic()
    core_v1.delete_namespace(name)
    wait_for("namespace gone", lambda: http.get(f"/api/v1/namespaces/{name}").status_code == 404, timeout_s=120)
    print(f"\nnamespace deleted in {time.monotonic() - began:.1f}s")
