"""The extender on the real control plane: 2,000 openb pods replayed through kube-scheduler +
the OME extender onto the 1,213 openb GPU nodes (kwok), compared with the same sequence placed
in-process by ome.solver; the extender is killed and restarted half-way.

What must hold:
- same set of placed pods, same node and GPU indices for every pod, per-node GPU allocation equal;
- no GPU over-committed, checked from the pods' annotations and requests alone;
- after the restart the extender's cache holds every allocation made before it, and nothing twice.

Determinism (why an exact match is expected): the extender decides in filter with place_one
over its nodes in name order and a tie-break rng seeded from (seed, namespace/name), and
reserves the choice. With --filter-mode chosen (the default) filter returns that node alone,
so kube-scheduler has nothing else to pick. With OME_REPLAY_FILTER_MODE=feasible filter returns
every feasible node and prioritize gives the choice 10 and the others at most 4: with
`ome cluster up --extender`'s weight 5 the choice leads by >= (10-4) x 5 x 10 = 300 points,
more than kube-scheduler's own scores can differ for these bare pods (NodeResourcesFit +
BalancedAllocation, <= 200). Both modes matched exactly on seed 42.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ome.domain import MILLI, PodRequest
from ome.scheduler import canonical_order, node_from_v1, pod_from_v1, tie_break_rng
from ome.simulations._traces import NODE_FILE, TRACE_DIR_ENV, load_nodes, load_pods
from ome.simulations.cluster import ClusterSettings, LocalCluster, manifest
from ome.solver import Bind, ClusterArrays, TargetWorkload, make_policy, place_one

from .conftest import require_control_plane

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = int(os.environ.get("OME_REPLAY_SEED", "42"))
PODS = int(os.environ.get("OME_REPLAY_PODS", "2000"))
POLICY = os.environ.get("OME_REPLAY_POLICY", "ome")
FILTER_MODE = os.environ.get("OME_REPLAY_FILTER_MODE", "chosen")  # or "feasible"
NAMESPACE = "replay"
TRACE = "openb_pod_list_default.csv"
REPO = Path(__file__).resolve().parents[2]
REPORT = Path(os.environ.get("OME_REPORT_DIR", REPO / ".cache" / "reports")) / "extender_replay.json"


def trace_dir() -> Path:
    for candidate in (os.environ.get(TRACE_DIR_ENV), REPO.parent / "shared" / "data" / "alibaba-gpu-2023",
                      Path("/work/shared/data/alibaba-gpu-2023")):
        if candidate and (Path(candidate) / NODE_FILE).is_file() and (Path(candidate) / TRACE).is_file():
            return Path(candidate)
    pytest.skip(f"the openb trace is not available (set ${TRACE_DIR_ENV} to the folder with {NODE_FILE} and {TRACE})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_manifest(name: str, pod: PodRequest) -> dict[str, Any]:
    """The Kubernetes form of a trace pod: whole GPUs as nvidia.com/gpu, shares as ome.io/gpu-milli,
    CPU-only pods with ome.io/gpu-milli: 0 so that kube-scheduler sends them to the extender too."""
    limits = {"cpu": f"{pod.cpu_milli}m", "memory": f"{pod.memory_mib}Mi"}
    if pod.num_gpu and not pod.is_sharing:
        limits["nvidia.com/gpu"] = str(pod.num_gpu)
    else:
        limits["ome.io/gpu-milli"] = str(pod.gpu_milli)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/serve:1",
                                     "resources": {"limits": limits, "requests": limits}}],
                     "terminationGracePeriodSeconds": 0}}


class Extender:
    """`python -m ome.scheduler serve` as a child process that the test can kill and restart."""

    def __init__(self, port: int, kubeconfig: Path, target: Path, log: Path) -> None:
        self.port, self.kubeconfig, self.target, self.log = port, kubeconfig, target, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 120) -> float:
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ome.scheduler", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--kubeconfig", str(self.kubeconfig), "--policy", POLICY, "--target", str(self.target),
                 "--seed", "0", "--filter-mode", FILTER_MODE], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                pytest.fail(f"extender exited with {self.proc.returncode}; see {self.log}", pytrace=False)
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"extender not healthy after {timeout_s}s; see {self.log}", pytrace=False)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def state(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/debug/state", timeout=30).json())


class PodWatch(threading.Thread):
    """Latest version of every pod in the namespace, from one watch (no polling)."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.pods: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.stopped = False

    def run(self) -> None:
        version = self.client.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["metadata"]["resourceVersion"]
        while not self.stopped:
            try:
                with self.client.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                        params={"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "1"},
                                        timeout=httpx.Timeout(10, read=600)) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            with self.changed:
                                self.pods[obj["metadata"]["name"]] = obj
                                self.changed.notify_all()
            except httpx.HTTPError:
                time.sleep(0.2)

    def outcome(self, name: str, timeout_s: float) -> str:
        """"bound" or "unschedulable" (the filter rejected every node)."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                pod = self.pods.get(name)
                if pod is not None:
                    if pod["spec"].get("nodeName"):
                        return "bound"
                    for c in pod.get("status", {}).get("conditions") or ():
                        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable":
                            return "unschedulable"
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"pod {name} neither bound nor unschedulable after {timeout_s}s: {pod}", pytrace=False)
                self.changed.wait(min(left, 1.0))


def clear_not_ready_taints(http: httpx.Client, names: list[str]) -> None:
    """The apiserver's TaintNodesByCondition admission puts node.kubernetes.io/not-ready on every
    new node; the node-lifecycle controller that would lift it once kwok reports Ready is not
    among the launcher's controllers (kwok keeps no leases). Lift it here."""
    from concurrent.futures import ThreadPoolExecutor

    def patch(name: str) -> None:
        r = http.patch(f"/api/v1/nodes/{name}", json={"spec": {"taints": None}},
                       headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(patch, names))


def in_process(nodes: list[Any], sequence: list[tuple[str, dict[str, Any]]], target: TargetWorkload) -> tuple[
        dict[str, tuple[str, tuple[int, ...]]], ClusterArrays]:
    arrays = ClusterArrays(canonical_order(nodes))
    policy = make_policy(POLICY, seed=0, target=target)
    placed = {}
    for name, body in sequence:
        info = pod_from_v1(body)
        d = place_one(arrays, info.request, policy, tie_break_rng(0, info.key))
        if isinstance(d, Bind):
            arrays.allocate(info.request, d.node, d.gpus)
            policy.observe(arrays, info.request, d.node, d.gpus)
            placed[name] = (arrays.names[d.node], d.gpus)
    return placed, arrays


def test_replay_matches_in_process_and_survives_a_restart(tmp_path: Path) -> None:
    require_control_plane()
    folder = trace_dir()
    nodes = load_nodes(folder / NODE_FILE)
    trace = load_pods(folder / TRACE)
    picks = np.random.default_rng(SEED).choice(len(trace.pods), size=PODS, replace=False)
    sequence = [(f"r{k:04d}-{trace.pods[i].name}".lower(), trace.pods[i]) for k, i in enumerate(picks)]
    bodies = [(name, pod_manifest(name, pod)) for name, pod in sequence]
    target = TargetWorkload.from_pods(trace.pods)

    port = free_port()
    cluster = LocalCluster(ClusterSettings(directory=tmp_path / "cluster", extender_url=f"http://127.0.0.1:{port}",
                                           controller_manager=False, node_ready_timeout_s=600))
    extender = Extender(port, cluster.kubeconfig, folder / TRACE, tmp_path / "extender.log")
    report: dict[str, Any] = {"seed": SEED, "pods": PODS, "policy": POLICY, "nodes": len(nodes),
                              "filter_mode": FILTER_MODE}
    try:
        t0 = time.monotonic()
        cluster.start(nodes)
        report["cluster_start_s"] = round(time.monotonic() - t0, 1)
        report["extender_start_s"] = round(extender.start(), 2)
        with cluster.http(timeout=60) as http:
            clear_not_ready_taints(http, [n.name for n in nodes])
            assert http.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}).status_code == 201
            watch = PodWatch(cluster.http(timeout=60))
            watch.start()
            outcomes: dict[str, str] = {}
            half = PODS // 2
            t0 = time.monotonic()
            for k, (name, body) in enumerate(bodies):
                if k == half:
                    before = extender.state()
                    extender.kill()  # in the middle of a pod: created while the extender is down
                r = http.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=body)
                assert r.status_code == 201, r.text
                if k == half:
                    report["extender_restart_s"] = round(extender.start(), 2)
                    after = extender.state()
                outcomes[name] = watch.outcome(name, timeout_s=120)
            report["replay_s"] = round(time.monotonic() - t0, 1)
            final_state = extender.state()
            items = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["items"]
            watch.stopped = True
    finally:
        extender.stop()
        cluster.stop()

    # --- the restart lost nothing and doubled nothing
    kept = {uid: e for uid, e in before["entries"].items() if e["state"] == "bound"}
    for uid, entry in kept.items():
        assert after["entries"].get(uid, {}).get("node") == entry["node"], (uid, entry, after["entries"].get(uid))
        assert after["entries"][uid]["gpus"] == entry["gpus"]
    extra = set(after["entries"]) - set(kept)
    assert len(extra) <= 1, f"entries that appeared across the restart: {extra}"
    for node, free in before["nodes"].items():
        if not extra:
            assert after["nodes"][node]["gpu_free"] == free["gpu_free"], node

    # --- the cluster, read from the pods alone
    cluster_placed: dict[str, tuple[str, tuple[int, ...]]] = {}
    use: Counter[tuple[str, int]] = Counter()
    gpu_count = {n.name: n.gpu_count for n in nodes}
    for pod in items:
        name, node = pod["metadata"]["name"], pod["spec"].get("nodeName")
        if not node:
            continue
        info = pod_from_v1(pod)
        gpus = info.gpu_index or ()
        assert len(gpus) == info.request.num_gpu, (name, gpus)
        assert all(g < gpu_count[node] for g in gpus), (name, node, gpus)
        for g in gpus:
            use[(node, g)] += info.request.gpu_milli
        cluster_placed[name] = (node, tuple(gpus))
    over = {k: v for k, v in use.items() if v > MILLI}
    assert not over, f"over-committed GPUs: {over}"

    # --- the same sequence in-process
    node_objs = [node_from_v1(manifest(n)) for n in nodes]
    expected, arrays = in_process(node_objs, bodies, target)
    per_node_cluster: dict[str, list[int]] = {n.name: [MILLI] * n.gpu_count for n in node_objs}
    for (node, g), v in use.items():
        per_node_cluster[node][g] -= v
    per_node_expected = {name: arrays.gpu_free[i, :arrays.gpu_count[i]].tolist() for i, name in enumerate(arrays.names)}
    differing_pods = sorted(n for n in set(expected) | set(cluster_placed) if expected.get(n) != cluster_placed.get(n))
    differing_nodes = sorted(n for n in per_node_expected if per_node_expected[n] != per_node_cluster[n])
    report.update({
        "placed_cluster": len(cluster_placed), "placed_in_process": len(expected),
        "unschedulable": sum(1 for o in outcomes.values() if o == "unschedulable"),
        "differing_pods": differing_pods[:20], "differing_pod_count": len(differing_pods),
        "differing_node_count": len(differing_nodes),
        "gpus_allocated": round(sum(use.values()) / MILLI, 2),
        "extender_final_bound": sum(1 for e in final_state["entries"].values() if e["state"] == "bound"),
        "cache_matches_cluster": all(final_state["nodes"][n]["gpu_free"] == per_node_cluster[n] for n in per_node_cluster),
    })
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert set(cluster_placed) == set(expected), "placed pods differ"
    assert not differing_pods, f"{len(differing_pods)} pods placed differently, e.g. " + ", ".join(
        f"{n}: cluster {cluster_placed.get(n)} vs in-process {expected.get(n)}" for n in differing_pods[:5])
    assert not differing_nodes
    assert report["cache_matches_cluster"]
