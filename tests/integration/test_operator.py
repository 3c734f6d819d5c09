"""The operator on a real control plane with the OME extender, run as `ome operator run`.

This module starts its own control plane (`LocalCluster`, as `ome cluster up --extender` does)
whose kube-scheduler calls the OME extender (`python -m ome.scheduler serve`), so every
governed GPU pod is filtered, scored and bound through the extender. The launcher's scheduler
has one profile, `default-scheduler` (extenders apply to every profile), so the operator runs
with --scheduler-name default-scheduler; the plan's required node affinity pins each pod to its
planned node whatever the scheduler's own choice.

Each test gets its own kwok nodes, labelled and tainted `ome.io/test=<name>` so that no other
test's pods land there, and its own operator process scoped to those nodes (--node-selector)
and to its namespace. Every operator and extender process is stopped (SIGKILL at worst).
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ome.domain import Node
from ome.simulations.cluster import ClusterError, ClusterSettings, LocalCluster, synthetic_nodes

from .conftest import list_pods, require_control_plane, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/scheduling.ome.io/v1alpha1"
GATE = "scheduling.ome.io/placement"
PLANNED = "scheduling.ome.io/planned-node"
MERGE = {"Content-Type": "application/merge-patch+json"}


# ----------------------------------------------------------------------------- set-up helpers


def _apply_crds(http: httpx.Client, pattern: str) -> None:
    names = []
    for path in sorted(glob.glob(str(REPO / pattern))):
        for doc in yaml.safe_load_all(Path(path).read_text()):
            response = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=doc)
            assert response.status_code in (201, 409), response.text
            names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
            conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_for("CRDs established", established, timeout_s=60)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def extender_url() -> str:
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory, extender_url: str) -> Iterator[LocalCluster]:
    """This module's control plane: kube-scheduler with the OME extender, which runs beside it."""
    require_control_plane()
    folder = tmp_path_factory.mktemp("operator-cluster")
    cluster = LocalCluster(ClusterSettings(directory=folder / "cluster", extender_url=extender_url))
    extender: subprocess.Popen[bytes] | None = None
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            pytest.fail(f"control plane did not start: {exc}", pytrace=False)
        with (folder / "extender.log").open("ab") as out:
            extender = subprocess.Popen(
                [sys.executable, "-m", "ome.scheduler", "serve", "--host", "127.0.0.1",
                 "--port", extender_url.rsplit(":", 1)[1], "--kubeconfig", str(cluster.kubeconfig)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        wait_for("extender healthy", lambda: _healthy(f"{extender_url}/healthz"), timeout_s=90)
        yield cluster
    finally:
        if extender is not None and extender.poll() is None:
            os.killpg(extender.pid, signal.SIGTERM)
            try:
                extender.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(extender.pid, signal.SIGKILL)
                extender.wait()
        cluster.stop()


@pytest.fixture()
def namespace(http: httpx.Client) -> Iterator[str]:
    name = f"op-{uuid.uuid4().hex[:8]}"
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    yield name
    http.delete(f"/api/v1/namespaces/{name}")


def extender_binds(extender_url: str) -> float:
    text = httpx.get(f"{extender_url}/metrics", timeout=5, trust_env=False).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ome_extender_decisions_total{") and 'verb="bind"' in line and '"bound"' in line)


@pytest.fixture(scope="module")
def crds(control_plane: LocalCluster) -> None:
    with control_plane.http() as http:
        _apply_crds(http, "deploy/crds/*.yaml")
        _apply_crds(http, "deploy/crds/ome-kinds/*.yaml")


def _taint(test: str) -> dict[str, str]:
    return {"key": "ome.io/test", "value": test, "effect": "NoSchedule"}


def toleration(test: str) -> dict[str, str]:
    return {"key": "ome.io/test", "operator": "Equal", "value": test, "effect": "NoSchedule"}


def add_nodes(cluster: LocalCluster, http: httpx.Client, test: str, nodes: list[Node]) -> list[str]:
    """Create kwok nodes only this test uses; lift the not-ready taint the apiserver adds on creation
    (the launcher runs no node-lifecycle controller), keep the test's own taint."""
    nodes = [n.with_labels(**{"ome.io/test": test}) for n in nodes]
    cluster.add_nodes(nodes, taints=[_taint(test)])
    for n in nodes:
        r = http.patch(f"/api/v1/nodes/{n.name}", json={"spec": {"taints": [_taint(test)]}}, headers=MERGE)
        assert r.status_code == 200, r.text
    return [n.name for n in nodes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child: SIGKILL it if pytest dies
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


@dataclass
class Operator:
    """One `ome operator run` process."""

    args: list[str]
    log: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        out = self.log.open("ab")
        self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=_die_with_parent, cwd=REPO)
        out.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no final writes (what a crash or OOM kill looks like)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5, trust_env=False).text

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture()
def operator(control_plane: LocalCluster, crds: None, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    """operator(test, namespace[, kubeconfig]) starts one; every one started is stopped at teardown (its log
    tail is printed, which pytest shows for failed tests)."""
    started: list[Operator] = []

    def start(test: str, namespace: str, kubeconfig: Path | None = None) -> Operator:
        port = _free_port()
        args = [sys.executable, "-c", "from ome.cli import app; app()", "operator", "run",
                "--kubeconfig", str(kubeconfig or control_plane.kubeconfig), "--namespace", namespace,
                "--node-selector", f"ome.io/test={test}", "--scheduler-name", "default-scheduler",
                "--metrics-port", str(port), "--resync", "5"]
        op = Operator(args, tmp_path / f"operator-{len(started)}.log", port).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"\n--- {op.log} ---\n{op.tail()}")


# ----------------------------------------------------------------------------- object helpers


def placement(name: str, test: str, replicas: int, gpus: int, accelerators: list[str] | None = None,
              **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "replicas": replicas,
        "resources": {"gpus": gpus, "cpu": "1", "memory": "2Gi", **spec.pop("resources", {})},
        "template": {"spec": {"tolerations": [toleration(test)],
                              "containers": [{"name": "server", "image": "registry.invalid/serve:1"}]}},
        "spot": {"policy": "Allowed"},  # synthetic nodes: every third of a model is spot
    }
    if accelerators:
        body["accelerators"] = [{"gpuModel": a} for a in accelerators]
    body.update(spec)
    return {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "ModelPlacement", "metadata": {"name": name},
            "spec": body}


def create(http: httpx.Client, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"{GROUP_PATH}/namespaces/{namespace}/modelplacements", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def get_placement(http: httpx.Client, namespace: str, name: str) -> dict[str, Any]:
    response = http.get(f"{GROUP_PATH}/namespaces/{namespace}/modelplacements/{name}")
    response.raise_for_status()
    return dict(response.json())


def status(http: httpx.Client, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_placement(http, namespace, name).get("status") or {})


def cond(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == kind), {})


def governed(http: httpx.Client, namespace: str, name: str) -> list[dict[str, Any]]:
    return list_pods(http, namespace, f"scheduling.ome.io/placement={name}")


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def all_running(http: httpx.Client, namespace: str, name: str, count: int) -> list[dict[str, Any]] | None:
    pods = governed(http, namespace, name)
    live = running(pods)
    return live if len(live) == count and len(pods) == count else None


def events(http: httpx.Client, namespace: str, name: str) -> list[dict[str, Any]]:
    items = http.get(f"/api/v1/namespaces/{namespace}/events",
                     params={"fieldSelector": f"involvedObject.name={name}"}).json()["items"]
    return [e for e in items if e.get("source", {}).get("component") == "ome-operator"]


def priority_class(http: httpx.Client, name: str, value: int) -> None:
    r = http.post("/apis/scheduling.k8s.io/v1/priorityclasses",
                  json={"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                        "value": value, "description": "ome operator tests"})
    assert r.status_code in (201, 409), r.text


def by_model(count: int, prefix: str) -> list[Node]:
    return synthetic_nodes(count, prefix=prefix)


# ----------------------------------------------------------------------------- must-shows


@pytest.mark.timeout(600)
def test_priorities_on_200_nodes_minimal_victims(control_plane: LocalCluster, http: httpx.Client, namespace: str,
                                                 operator: Callable[..., Operator], extender_url: str) -> None:
    """Three priority levels fill 200 mixed nodes (1,336 GPUs); a new high-priority replica that
    does not fit evicts exactly the minimal victims, all of the lowest priority, and lands."""
    test = "op-prio"
    nodes = by_model(200, prefix="opp")  # 67 H100 x8, 67 A100 x8, 66 L4 x4
    add_nodes(control_plane, http, test, nodes)
    models = Counter(n.gpu_model for n in nodes)
    assert sum(n.gpu_count for n in nodes) == 1336
    priority_class(http, "ome-test-high", 1000)
    priority_class(http, "ome-test-low", 100)
    op = operator(test, namespace)
    began = time.monotonic()
    # high: every H100; mid: half the A100s; low: two per remaining A100 and one per L4 -> full
    create(http, namespace, placement("high", test, models["H100"], 8, ["H100"], priorityClassName="ome-test-high"))
    create(http, namespace, placement("mid", test, models["A100"] // 2, 8, ["A100"], priority=500))
    low_count = 2 * (models["A100"] - models["A100"] // 2) + models["L4"]
    create(http, namespace, placement("low", test, low_count, 4, ["A100", "L4"], priorityClassName="ome-test-low"))
    total = models["H100"] + models["A100"] // 2 + low_count
    wait_for(f"{total} governed pods Running", lambda: len(running(list_pods(http, namespace))) == total,
             timeout_s=420, poll_s=2.0)
    filled = time.monotonic() - began
    for name, want in (("high", models["H100"]), ("mid", models["A100"] // 2), ("low", low_count)):
        wait_for(f"{name} status placed", lambda n=name, w=want: status(http, namespace, n).get("placedReplicas") == w,
                 timeout_s=60)
    print(f"\n{total} replicas over 200 nodes (1336 GPUs) Running {filled:.1f}s after the first ModelPlacement")
    assert extender_binds(extender_url) >= total  # every one bound through the extender
    before = {p["metadata"]["name"]: p for p in list_pods(http, namespace)}
    used = Counter()
    for p in before.values():
        used[p["spec"]["nodeName"]] += int(p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    capacity = {n.name: n.gpu_count for n in nodes}
    assert used == Counter(capacity), "the three levels fill every GPU"

    # Oracle: on an A100 node every GPU is taken, so 8 free GPUs means evicting everything there;
    # the best node minimises (highest victim priority, GPUs, victim count).
    prio = {"high": 1000, "mid": 500, "low": 100}
    on_node: dict[str, list[dict[str, Any]]] = {}
    for p in before.values():
        on_node.setdefault(p["spec"]["nodeName"], []).append(p)
    keys = {}
    for n in nodes:
        if n.gpu_model == "A100":
            pods = on_node[n.name]
            keys[n.name] = (max(prio[p["metadata"]["labels"]["scheduling.ome.io/placement"]] for p in pods), 8, len(pods))
    best = min(keys.values())
    assert best == (100, 8, 2)  # two low replicas, not the one mid replica (fewer victims but higher priority)

    create(http, namespace, placement("urgent", test, 1, 8, ["A100"], priorityClassName="ome-test-high"))
    urgent = wait_for("urgent Running", lambda: all_running(http, namespace, "urgent", 1), timeout_s=120)[0]
    landed = urgent["spec"]["nodeName"]
    assert keys[landed] == best
    after = {p["metadata"]["name"]: p for p in list_pods(http, namespace)}
    gone = {name for name, p in before.items()
            if name not in after or after[name]["metadata"]["uid"] != p["metadata"]["uid"]}
    assert gone == {p["metadata"]["name"] for p in on_node[landed]}, "exactly the victims on the chosen node"
    assert all(name.startswith("low-") for name in gone) and len(gone) == 2
    wait_for("low Degraded=Preempted", lambda: cond(status(http, namespace, "low"), "Degraded").get("reason") == "Preempted",
             timeout_s=30)
    degraded = cond(status(http, namespace, "low"), "Degraded")
    assert degraded["status"] == "True" and f"preempted by {namespace}/urgent" in degraded["message"]
    assert status(http, namespace, "high")["placedReplicas"] == models["H100"]
    assert status(http, namespace, "mid")["placedReplicas"] == models["A100"] // 2
    time.sleep(3)  # nothing else moves afterwards: the evicted low replicas wait, they preempt no one
    final = {p["metadata"]["name"]: p["metadata"]["uid"] for p in list_pods(http, namespace)}
    assert all(final.get(name) == p["metadata"]["uid"] for name, p in before.items() if name not in gone)
    assert {e["reason"] for e in events(http, namespace, "urgent")} >= {"Placed", "Preempting"}
    assert "ome_operator_evictions_total 2.0" in op.metrics()


@pytest.mark.timeout(300)
def test_gang_stays_gated_until_the_fourth_node_frees(control_plane: LocalCluster, http: httpx.Client,
                                                      namespace: str, operator: Callable[..., Operator]) -> None:
    test = "op-gang"
    names = add_nodes(control_plane, http, test, [n for n in by_model(15, prefix="opg") if n.gpu_model == "H100"])
    assert len(names) == 5
    # two of the five nodes are taken by pods the operator does not govern: 3 free, 4 needed
    blockers = []
    for i, node in enumerate(names[:2]):
        blockers.append(f"hog-{i}")
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"hog-{i}"},
                "spec": {"nodeName": node, "tolerations": [toleration(test)],
                         "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
        assert http.post(f"/api/v1/namespaces/{namespace}/pods", json=body).status_code == 201
    wait_for("blockers Running", lambda: len(running(list_pods(http, namespace))) == 2, timeout_s=60)
    operator(test, namespace)
    create(http, namespace, placement("gang", test, 1, 8, ["H100"], resources={"gpus": 8, "nodesPerReplica": 4}))
    wait_for("4 gated members", lambda: len(governed(http, namespace, "gang")) == 4, timeout_s=60)
    wait_for("Unschedulable GangIncomplete",
             lambda: cond(status(http, namespace, "gang"), "Unschedulable").get("reason") == "GangIncomplete",
             timeout_s=30)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # stays fully gated: no member reserved, none bound
        for p in governed(http, namespace, "gang"):
            assert p["spec"].get("schedulingGates") == [{"name": GATE}]
            assert not p["spec"].get("nodeName") and PLANNED not in p["metadata"].get("annotations", {})
        time.sleep(0.5)
    message = cond(status(http, namespace, "gang"), "Unschedulable")["message"]
    assert "3 with room now, 4 needed" in message

    freed = time.monotonic()
    r = http.delete(f"/api/v1/namespaces/{namespace}/pods/hog-0", params={"gracePeriodSeconds": "0"})
    assert r.status_code == 200
    observed_partial = []
    while True:  # never an ungated member while another has no reserved node
        pods = governed(http, namespace, "gang")
        ungated = [p for p in pods if not p["spec"].get("schedulingGates")]
        reserved = [p for p in pods if p["metadata"].get("annotations", {}).get(PLANNED)]
        if ungated and len(reserved) < 4:
            observed_partial.append([p["metadata"]["name"] for p in ungated])
        if len(running(pods)) == 4:
            break
        assert time.monotonic() - freed < 90, f"gang not running 90s after the node freed: {pods}"
        time.sleep(0.2)
    assert not observed_partial
    pods = governed(http, namespace, "gang")
    assert len({p["spec"]["nodeName"] for p in pods}) == 4
    scheduled = [next(c["lastTransitionTime"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
                 for p in pods]
    print(f"\ngang Running {time.monotonic() - freed:.1f}s after the fourth node freed; "
          f"PodScheduled times {sorted(scheduled)}")
    assert {e["reason"] for e in events(http, namespace, "gang")} >= {"Placed", "GangReleased"}
    wait_for("status: 1 replica running", lambda: status(http, namespace, "gang").get("runningReplicas") == 1,
             timeout_s=30)


@pytest.mark.timeout(240)
def test_accelerator_preference_and_cost(control_plane: LocalCluster, http: httpx.Client, namespace: str,
                                         operator: Callable[..., Operator]) -> None:
    test = "op-pref"
    nodes = [n for n in by_model(6, prefix="opr") if n.gpu_model in ("H100", "A100")]
    add_nodes(control_plane, http, test, nodes)  # 2 H100 + 2 A100, all on-demand
    policy = {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "default"},
              "spec": {"objective": {"strandedGpusWeight": 1, "costWeight": 1, "spreadWeight": 0},
                       "pools": [{"name": "h100", "nodeSelector": {"matchLabels": {"scheduling.ome.io/pool": "h100"}},
                                  "onDemandPricePerGpuHour": "4.00", "spotPricePerGpuHour": "1.50"},
                                 {"name": "a100", "nodeSelector": {"matchLabels": {"scheduling.ome.io/pool": "a100"}},
                                  "onDemandPricePerGpuHour": "2.50", "spotPricePerGpuHour": "1.00"}]}}
    http.delete(f"{GROUP_PATH}/placementpolicies/default")
    assert http.post(f"{GROUP_PATH}/placementpolicies", json=policy).status_code == 201
    try:
        operator(test, namespace)
        create(http, namespace, placement("pref", test, 3, 8, ["H100", "A100"]))
        pods = wait_for("3 Running", lambda: all_running(http, namespace, "pref", 3), timeout_s=90)
        model = {n.name: n.gpu_model for n in nodes}
        by_replica = {p["metadata"]["labels"]["scheduling.ome.io/replica"]: model[p["spec"]["nodeName"]] for p in pods}
        assert by_replica == {"0": "H100", "1": "H100", "2": "A100"}  # first choice while it fits, then the next
        wait_for("status 3 running", lambda: status(http, namespace, "pref").get("runningReplicas") == 3, timeout_s=30)
        st = status(http, namespace, "pref")
        # 2 replicas x 8 GPUs x $4.00 + 1 x 8 x $2.50 = $84.00 per hour
        assert st["hourlyCost"] == "84.00" and st["hourlyCostMicroUSD"] == 84_000_000
        assert [r["hourlyCost"] for r in st["replicas"]] == ["32.00", "32.00", "20.00"]
        assert [r["pool"] for r in st["replicas"]] == ["h100", "h100", "a100"]
        # a fourth replica no longer fits either choice: it waits, saying why
        r = http.patch(f"{GROUP_PATH}/namespaces/{namespace}/modelplacements/pref", json={"spec": {"replicas": 5}},
                       headers=MERGE)
        assert r.status_code == 200
        wait_for("Unschedulable", lambda: cond(status(http, namespace, "pref"), "Unschedulable").get("status") == "True",
                 timeout_s=30)
        st = status(http, namespace, "pref")
        assert st["placedReplicas"] == 4 and "accepts H100 > A100" in cond(st, "Unschedulable")["message"]
        assert st["hourlyCost"] == "104.00"
    finally:
        http.delete(f"{GROUP_PATH}/placementpolicies/default")


@pytest.mark.timeout(240)
def test_inference_service_lands_only_on_model_ready_nodes(control_plane: LocalCluster, http: httpx.Client,
                                                            namespace: str, operator: Callable[..., Operator]) -> None:
    test = "op-isvc"
    model_label = "models.ome.io/clusterbasemodel.llama-3-70b-op"
    nodes = []
    for i, n in enumerate(by_model(12, prefix="opi")):  # ranks 0..3 of each model; rank 2 is spot
        rank = i // 3
        if n.gpu_model == "H100" or (n.gpu_model == "A100" and rank == 0):
            nodes.append(n.with_labels(**{model_label: "Ready"}) if rank < 2 or n.gpu_model == "A100" else n)
    names = add_nodes(control_plane, http, test, nodes)
    ready_h100 = {n.name for n in nodes if n.gpu_model == "H100" and dict(n.labels).get(model_label) == "Ready"}
    assert 0 < len(ready_h100) < len([n for n in nodes if n.gpu_model == "H100"])
    klass = {"apiVersion": "ome.io/v1beta1", "kind": "AcceleratorClass", "metadata": {"name": "op-test-h100"},
             "spec": {"vendor": "nvidia", "model": "h100",
                      "discovery": {"nodeSelector": {"nvidia.com/gpu.product": "H100"}},
                      "capabilities": {"memoryGB": "80Gi"}, "cost": {"perHour": "3.50", "spotPerHour": "1.20"}}}
    r = http.post("/apis/ome.io/v1beta1/acceleratorclasses", json=klass)
    assert r.status_code in (201, 409), r.text
    isvc = {"apiVersion": "ome.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "chat"},
            "spec": {"model": {"name": "llama-3-70b-op"}, "runtime": {"name": "vllm"},
                     "acceleratorSelector": {"acceleratorClass": "op-test-h100"},
                     "engine": {"minReplicas": 2 * len(ready_h100), "maxReplicas": 8,
                                "tolerations": [toleration(test)],
                                "runner": {"name": "engine", "image": "registry.invalid/vllm:1",
                                           "resources": {"requests": {"nvidia.com/gpu": "4", "cpu": "8"},
                                                         "limits": {"nvidia.com/gpu": "4"}}}}}}
    r = http.post(f"/apis/ome.io/v1beta1/namespaces/{namespace}/inferenceservices", json=isvc)
    assert r.status_code == 201, r.text
    operator(test, namespace)
    mp = wait_for("derived ModelPlacement",
                  lambda: http.get(f"{GROUP_PATH}/namespaces/{namespace}/modelplacements/chat-engine").status_code == 200
                  and get_placement(http, namespace, "chat-engine"), timeout_s=60)
    assert mp["spec"]["accelerators"] == [{"acceleratorClass": "op-test-h100"}]
    assert mp["spec"]["model"]["policy"] == "Required"
    assert mp["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    count = 2 * len(ready_h100)
    pods = wait_for(f"{count} engine pods Running", lambda: all_running(http, namespace, "chat-engine", count),
                    timeout_s=90)
    assert {p["spec"]["nodeName"] for p in pods} == ready_h100  # H100 class AND model Ready; 2 x 4 GPUs each
    assert all(p["spec"]["containers"][0]["image"] == "registry.invalid/vllm:1" for p in pods)
    wait_for("cost in status", lambda: status(http, namespace, "chat-engine").get("runningReplicas") == count,
             timeout_s=30)
    assert status(http, namespace, "chat-engine")["hourlyCost"] == f"{count * 4 * 3.5:.2f}"  # the class's price
    assert set(names) >= ready_h100


@pytest.mark.timeout(300)
def test_killing_the_operator_loses_nothing_and_evicts_nothing_extra(
        control_plane: LocalCluster, http: httpx.Client, namespace: str, operator: Callable[..., Operator]) -> None:
    test = "op-kill"
    nodes = [n for n in by_model(9, prefix="opk") if n.gpu_model == "H100"]  # 3 H100 x 8 = 24 GPUs
    add_nodes(control_plane, http, test, nodes)
    op = operator(test, namespace)
    create(http, namespace, placement("low", test, 6, 4, ["H100"], priority=10))
    wait_for("6 low Running", lambda: all_running(http, namespace, "low", 6), timeout_s=90)
    wait_for("low running in status", lambda: status(http, namespace, "low").get("runningReplicas") == 6, timeout_s=30)

    # 1. a restart with nothing to do changes nothing
    op.kill()
    snapshot = {p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["nodeName"], p["metadata"]["resourceVersion"])
                for p in governed(http, namespace, "low")}
    events_before = len(events(http, namespace, "low"))
    op = operator(test, namespace)
    wait_for("metrics up", lambda: _metric(op, "ome_operator_cycles_total") >= 1, timeout_s=60)
    time.sleep(6)  # a resync later
    assert {p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]["nodeName"], p["metadata"]["resourceVersion"])
            for p in governed(http, namespace, "low")} == snapshot
    assert len(events(http, namespace, "low")) == events_before
    for stage in ("reserve", "evict", "release"):  # no pod written, evicted or deleted
        assert _metric(op, f'ome_operator_writes_total{{stage="{stage}"}}') <= 0, stage

    # 2. killed in the middle of a preemption: two 8-GPU replicas need two nodes' worth of low replicas
    low_uids = {p["metadata"]["uid"] for p in governed(http, namespace, "low")}
    create(http, namespace, placement("urgent", test, 2, 8, ["H100"], priority=100))
    wait_for("the operator starts acting", lambda: governed(http, namespace, "urgent"), timeout_s=60, poll_s=0.05)
    op.kill()
    killed_at = {p["metadata"]["uid"] for p in governed(http, namespace, "low") if not p["metadata"].get("deletionTimestamp")}
    operator(test, namespace)
    wait_for("urgent Running", lambda: all_running(http, namespace, "urgent", 2), timeout_s=120)
    wait_for("low status settled", lambda: status(http, namespace, "low").get("placedReplicas") == 2, timeout_s=60)
    survivors = {p["metadata"]["uid"] for p in running(governed(http, namespace, "low"))}
    evicted = low_uids - survivors
    print(f"\nkilled with {len(low_uids) - len(killed_at)} of the evictions done; {len(evicted)} in total")
    assert len(evicted) == 4, "exactly two nodes' worth of low replicas (4 x 4 GPUs), before and after the kill"
    assert len(survivors) == 2
    nodes_urgent = {p["spec"]["nodeName"] for p in governed(http, namespace, "urgent")}
    assert len(nodes_urgent) == 2
    st = status(http, namespace, "low")
    assert st["desiredReplicas"] == 6 and cond(st, "Degraded")["status"] == "True"
    # the preempted replicas are recreated and wait, gated, for room: nothing is lost
    wait_for("4 low replicas waiting gated",
             lambda: len([p for p in governed(http, namespace, "low") if p["spec"].get("schedulingGates")]) == 4,
             timeout_s=60)
    assert {p["metadata"]["uid"] for p in running(governed(http, namespace, "low"))} == survivors


def _metric(op: Operator, name: str) -> float:
    try:
        text = op.metrics()
    except httpx.HTTPError:
        return -1
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") or (name.endswith("}") and line.startswith(name)):
            total += float(line.rsplit(" ", 1)[1])
    return total


INVALID = [
    # (what is wrong, patch to a valid spec, the field the message must name)
    ("negative replicas", {"replicas": -1}, "spec.replicas"),
    ("gpus and gpuShare", {"resources": {"gpus": 2, "gpuShare": 500}}, "spec.resources.gpuShare"),
    ("share out of range", {"resources": {"gpus": 0, "gpuShare": 1500}}, "spec.resources.gpuShare"),
    ("too many GPUs", {"resources": {"gpus": 17}}, "spec.resources.gpus"),
    ("accelerator with both", {"accelerators": [{"gpuModel": "H100", "acceleratorClass": "x"}]}, "spec.accelerators[0]"),
    ("unknown spot policy", {"spot": {"policy": "Sometimes"}}, "spec.spot.policy"),
    ("on-demand minimum above replicas", {"replicas": 2, "spot": {"policy": "Allowed", "minOnDemandReplicas": 3}},
     "spec.spot.minOnDemandReplicas"),
    ("unknown workload kind", {"workloadRef": {"kind": "CronJob", "name": "x"}}, "spec.workloadRef.kind"),
    ("no workload", {"workloadRef": None}, "spec.workloadRef"),
    ("bad cpu", {"resources": {"cpu": "lots"}}, "spec.resources.cpu"),
    ("both priorities", {"priority": 5, "priorityClassName": "x"}, "spec.priority"),
    ("model policy", {"model": {"name": "m", "policy": "Maybe"}}, "spec.model.policy"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("patch", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_placements_are_rejected_naming_the_field(crds: None, http: httpx.Client, namespace: str,
                                                          patch: dict[str, Any], field: str) -> None:
    body = placement("bad", "none", 1, 1)
    for key, value in patch.items():
        if value is None:
            body["spec"].pop(key)
        elif isinstance(value, dict) and isinstance(body["spec"].get(key), dict):
            body["spec"][key] = {**body["spec"][key], **value}
        else:
            body["spec"][key] = value
    response = http.post(f"{GROUP_PATH}/namespaces/{namespace}/modelplacements", json=body)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert field in message, message
    print(f"\n{message}")


@pytest.mark.timeout(60)
def test_placement_policy_validation(crds: None, http: httpx.Client) -> None:
    wrong_name = {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "mine"},
                  "spec": {}}
    r = http.post(f"{GROUP_PATH}/placementpolicies", json=wrong_name)
    assert r.status_code == 422 and "metadata.name" in r.json()["message"]
    bad_price = {"apiVersion": "scheduling.ome.io/v1alpha1", "kind": "PlacementPolicy",
                 "metadata": {"name": "default"},
                 "spec": {"pools": [{"name": "p", "nodeSelector": {"matchLabels": {"a": "b"}},
                                     "onDemandPricePerGpuHour": "cheap"}]}}
    r = http.post(f"{GROUP_PATH}/placementpolicies", json=bad_price, params={"dryRun": "All"})
    assert r.status_code == 422 and "spec.pools[0].onDemandPricePerGpuHour" in r.json()["message"]


@pytest.mark.timeout(60)
def test_printer_columns(crds: None, http: httpx.Client) -> None:
    crd = http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modelplacements.scheduling.ome.io").json()
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:4] == ["Desired", "Placed", "Running", "Cost/h"]



@pytest.mark.timeout(240)
def test_operator_runs_with_only_its_rbac(control_plane: LocalCluster, http: httpx.Client, namespace: str,
                                          crds: None, tmp_path: Path, operator: Callable[..., Operator]) -> None:
    """The ClusterRole in deploy/operator/rbac.yaml is enough: run as a service account bound to it."""
    test = "op-rbac"
    add_nodes(control_plane, http, test, [n for n in by_model(6, prefix="opb") if n.gpu_model == "H100"])
    role = next(d for d in yaml.safe_load_all((REPO / "deploy/operator/rbac.yaml").read_text())
                if d["kind"] == "ClusterRole")
    name = f"ome-operator-{namespace}"
    role["metadata"]["name"] = name
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": "ome-operator", "namespace": namespace}]}
    assert http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts",
                     json={"metadata": {"name": "ome-operator"}}).status_code == 201
    assert http.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", json=role).status_code == 201
    assert http.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=binding).status_code == 201
    try:
        token = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/ome-operator/token",
                          json={"spec": {"expirationSeconds": 3600}}).json()["status"]["token"]
        admin = yaml.safe_load(control_plane.kubeconfig.read_text())
        admin["users"] = [{"name": "operator", "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = "operator"
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(admin))
        op = operator(test, namespace, kubeconfig)
        create(http, namespace, placement("rbac", test, 2, 4, ["H100"]))
        wait_for("2 Running", lambda: all_running(http, namespace, "rbac", 2), timeout_s=90)
        wait_for("status", lambda: status(http, namespace, "rbac").get("runningReplicas") == 2, timeout_s=30)
        assert events(http, namespace, "rbac"), "events are posted"
        assert " 403" not in op.log.read_text() and "Forbidden" not in op.log.read_text()
    finally:
        http.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
        http.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")


@pytest.mark.timeout(240)
def test_extender_binds_every_pod_where_planned(control_plane: LocalCluster, http: httpx.Client, namespace: str,
                                                operator: Callable[..., Operator], extender_url: str) -> None:
    """Whole GPUs, a gang and GPU shares go through kube-scheduler + the OME extender: every pod
    is bound by the extender, on its planned node, and no GPU is over-committed."""
    test = "op-ext"
    add_nodes(control_plane, http, test, by_model(6, prefix="ope"))  # 2 H100, 2 A100, 2 L4
    binds_before = extender_binds(extender_url)
    operator(test, namespace)
    create(http, namespace, placement("whole", test, 3, 4, ["H100"]))
    create(http, namespace, placement("gang", test, 1, 8, ["A100"], resources={"gpus": 8, "nodesPerReplica": 2}))
    create(http, namespace, placement("share", test, 4, 0, ["L4"], resources={"gpus": 0, "gpuShare": 250}))
    pods = wait_for("9 governed pods Running", lambda: len(r := running(list_pods(http, namespace))) == 9 and r,
                    timeout_s=120)
    assert extender_binds(extender_url) - binds_before >= 9
    milli: Counter[tuple[str, int]] = Counter()
    for p in pods:
        annotations = p["metadata"]["annotations"]
        assert p["spec"]["nodeName"] == annotations[PLANNED], p["metadata"]["name"]
        limits = p["spec"]["containers"][0]["resources"]["limits"]
        share = int(limits.get("ome.io/gpu-milli", 0)) or 1000
        for g in annotations["ome.io/gpu-index"].split(","):
            milli[(p["spec"]["nodeName"], int(g))] += share
    assert max(milli.values()) <= 1000, milli
    assert len({p["spec"]["nodeName"] for p in pods if p["metadata"]["name"].startswith("gang-")}) == 2
