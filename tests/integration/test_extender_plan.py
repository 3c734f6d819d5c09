"""`--policy ome-plan` behind the real kube-scheduler: the extender solves its plan in a separate
process from the target workload, installs it, and the scheduler binds the pods where it says.

The workload is chosen so that one packing alone serves it all, and so the plan is known in
advance whatever the solver's luck: 4 "heavy" pods (1 GPU, 24 cores) can only share the two
CPU-rich nodes (2 GPUs, 64 cores each), which leaves the two CPU-poor nodes (2 GPUs, 8 cores)
to the 4 "light" pods (1 GPU, 2 cores). `ome` alone would place these pods the same way, so
what this proves is the plan's path through the product (solved in the child process, shown
in /debug/state, adopted, the pods bound by the real scheduler where the slots are), not
that a plan beats `ome`; the unit tests and the replays show that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ome.domain import Node
from ome.simulations.cluster import ClusterSettings, LocalCluster

from .conftest import require_control_plane
from .test_extender_deploy import NS, free_port, pod, start_ome_scheduler, wait
from .test_extender_replay import clear_not_ready_taints

pytestmark = [pytest.mark.integration]

HEAVY, LIGHT = "24000/4096/1/1000", "2000/4096/1/1000"  # the plan's kind keys: cpu/memory/GPUs/milli


def test_ome_plan_places_through_a_real_kube_scheduler(tmp_path: Path) -> None:
    require_control_plane()
    nodes = [Node(f"rich-{i}", 64_000, 256_000, "A100", 2, 40960) for i in range(2)]
    nodes += [Node(f"poor-{i}", 8_000, 64_000, "A100", 2, 40960) for i in range(2)]
    target = tmp_path / "target.csv"
    rows = [f"h{i},24000,4096,1,1000" for i in range(4)] + [f"l{i},2000,4096,1,1000" for i in range(4)]
    target.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n" + "\n".join(rows) + "\n")
    cluster = LocalCluster(ClusterSettings(directory=tmp_path / "cluster", controller_manager=False))
    port = free_port()
    ext = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cluster.start(nodes)
        kc = str(cluster.kubeconfig)
        with (tmp_path / "extender.log").open("ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "ome.scheduler", "serve", "--port", str(port),
                                           "--kubeconfig", kc, "--policy", "ome-plan", "--target", str(target),
                                           "--plan-seconds", "5", "--plan-checks", "0", "--plan-candidates", "1",
                                           "--tie-break", "first"],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(start_ome_scheduler(tmp_path, cluster.kubeconfig, ext))
        with cluster.http() as http:
            clear_not_ready_taints(http, [n.name for n in nodes])
            http.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
            # The plan is solved once the cache is synced (a spawned process, a few seconds).
            deadline, state = time.monotonic() + 120, {}
            while time.monotonic() < deadline:
                try:
                    state = httpx.get(f"{ext}/debug/state", timeout=5).json()
                except httpx.HTTPError:
                    state = {}
                if state.get("plan"):
                    break
                time.sleep(0.5)
            assert state.get("plan"), f"no plan after 120 s; see {tmp_path / 'extender.log'}"
            assert state["policy"] == "ome-plan" and state["plan_adopted"] is True
            plan = state["plan"]
            assert {n: k for n, k in plan.items() if k} == {
                "rich-0": {HEAVY: 2}, "rich-1": {HEAVY: 2}, "poor-0": {LIGHT: 2}, "poor-1": {LIGHT: 2}}
            # Lights first: each takes a planned slot on a CPU-poor node; the heavies then fit.
            bodies = [pod(f"light{i}", gpus=1) for i in range(4)] + [pod(f"heavy{i}", gpus=1) for i in range(4)]
            for body in bodies:
                cpu = "24" if body["metadata"]["name"].startswith("heavy") else "2"
                asks = {"cpu": cpu, "memory": "4Gi", "nvidia.com/gpu": "1"}
                body["spec"]["containers"][0]["resources"] = {"limits": asks, "requests": asks}
                http.post(f"/api/v1/namespaces/{NS}/pods", json=body).raise_for_status()
                wait(http, body["metadata"]["name"], "bound")
            where = {b["metadata"]["name"]: wait(http, b["metadata"]["name"], "bound")["spec"]["nodeName"] for b in bodies}
            assert all(where[f"light{i}"].startswith("poor-") for i in range(4)), where
            assert all(where[f"heavy{i}"].startswith("rich-") for i in range(4)), where
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
        cluster.stop()
