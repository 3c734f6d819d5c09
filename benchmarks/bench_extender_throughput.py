"""End-to-end scheduling throughput: kube-scheduler with the OME extender vs the same
kube-scheduler without any extender, side by side on one kwok cluster of the 1,213 openb nodes.

Two kube-scheduler processes run from the same KubeSchedulerConfiguration (deploy/scheduler's,
with this cluster's kubeconfig): "ome-scheduler" with the extender entry, "stock-scheduler"
without it. Each round, for each scheduler in ABBA order: the scheduler is stopped, a batch of
--batch pods (a seeded openb sample, the same shapes for both schedulers in a round) is created
for it and left pending, the scheduler is started, and its throughput is the batch size over
the time from its first bind to its last (start-up excluded), timed from one pod watch.
Score: sum over rounds of ome pods/s divided by stock pods/s, as totals (goal >= 0.8). The
extender runs `ome extender serve` with the openb target workload and the extender's default
policy (ome.scheduler.DEFAULT_POLICY = "ome") unless --policy names another.

    .venv/bin/python benchmarks/bench_extender_throughput.py [--batch 400] [--rounds 2] [--policy ome] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extender_latency import NODES_CSV, PODS_CSV, trace_dir  # noqa: E402
from ome.scheduler import DEFAULT_POLICY  # noqa: E402

NAMESPACE = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scheduler_config(kubeconfig: Path, name: str, extender_url: str | None) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "deploy" / "scheduler" / "scheduler-config.yaml").read_text())
    (cm,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    config["clientConnection"] = {"kubeconfig": str(kubeconfig), "qps": 1000, "burst": 2000}
    config["leaderElection"] = {"leaderElect": False}
    config["profiles"] = [{"schedulerName": name}]
    if extender_url:
        config["extenders"][0]["urlPrefix"] = extender_url
    else:
        config.pop("extenders")
    return config


class Scheduler:
    def __init__(self, binary: Path, name: str, config: dict[str, Any], folder: Path, kubeconfig: Path) -> None:
        self.binary, self.name, self.folder, self.kubeconfig = binary, name, folder, kubeconfig
        self.config_path = folder / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        kc = str(self.kubeconfig)
        log = (self.folder / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.binary), f"--config={self.config_path}", "--bind-address=127.0.0.1",
             f"--secure-port={free_port()}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
             f"--cert-dir={self.folder / ('certs-' + self.name)}", "--v=1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class BindWatch(threading.Thread):
    """Receipt time of each pod's first spec.nodeName in the namespace, and which pods the
    scheduler found no node for (PodScheduled=False, Unschedulable)."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.bound: dict[str, float] = {}
        self.unschedulable: set[str] = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        version = self.client.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["metadata"]["resourceVersion"]
        while True:
            try:
                with self.client.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                        params={"watch": "1", "resourceVersion": version},
                                        timeout=httpx.Timeout(10, read=900)) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        obj = json.loads(line)["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        name = obj["metadata"].get("name")
                        if obj.get("spec", {}).get("nodeName"):
                            with self.lock:
                                self.bound.setdefault(name, time.monotonic())
                                self.unschedulable.discard(name)
                        elif any(c.get("reason") == "Unschedulable"
                                 for c in obj.get("status", {}).get("conditions") or ()):
                            with self.lock:
                                self.unschedulable.add(name)
            except httpx.HTTPError:
                time.sleep(0.1)

    def times(self, names: list[str]) -> list[float]:
        with self.lock:
            return [self.bound[n] for n in names if n in self.bound]

    def settled(self, names: list[str]) -> bool:
        """Every pod is bound or was found unschedulable (this is a fill-up: nothing leaves)."""
        with self.lock:
            return all(n in self.bound or n in self.unschedulable for n in names)

    def failed(self, names: list[str]) -> int:
        with self.lock:
            return sum(1 for n in names if n not in self.bound and n in self.unschedulable)


def pod_body(name: str, scheduler: str, cpu: int, mem: int, num_gpu: int, milli: int) -> dict[str, Any]:
    limits = {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}
    if num_gpu and milli >= 1000:
        limits["nvidia.com/gpu"] = str(num_gpu)
    else:
        limits["ome.io/gpu-milli"] = str(milli)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "registry.invalid/serve:1",
                                     "resources": {"limits": limits, "requests": limits}}]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--policy", default=DEFAULT_POLICY, help="default: the extender's (%(default)s)")
    ap.add_argument("--filter-mode", default="chosen", choices=["feasible", "chosen"])
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "reports" / "bench_extender_throughput.json")
    args = ap.parse_args()

    from ome.simulations._traces import load_nodes, load_pods
    from ome.simulations.cluster import ClusterSettings, LocalCluster, find_binaries

    folder = trace_dir()
    nodes = load_nodes(folder / NODES_CSV)
    trace = load_pods(folder / PODS_CSV).pods
    work = Path(tempfile.mkdtemp(prefix="ome-bench-"))
    cluster = LocalCluster(ClusterSettings(directory=work / "cluster", controller_manager=False,
                                           node_ready_timeout_s=600))
    port = free_port()
    extender_log = (work / "extender.log").open("ab")
    extender: subprocess.Popen[bytes] | None = None
    schedulers: list[Scheduler] = []
    result: dict[str, Any] = {"benchmark": "scheduling throughput, kube-scheduler + OME extender vs without",
                              "nodes": len(nodes), "batch": args.batch, "rounds": args.rounds, "seed": args.seed,
                              "policy": args.policy, "filter_mode": args.filter_mode, "cpus": os.cpu_count()}
    try:
        t0 = time.monotonic()
        cluster.start(nodes)
        result["cluster_start_s"] = round(time.monotonic() - t0, 1)
        http = cluster.http(timeout=60)

        def untaint(name: str) -> None:
            http.patch(f"/api/v1/nodes/{name}", json={"spec": {"taints": None}},
                       headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(untaint, [n.name for n in nodes]))  # see tests/integration/test_extender_replay.py
        http.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}).raise_for_status()
        extender = subprocess.Popen(
            [sys.executable, "-m", "ome.scheduler", "serve", "--port", str(port), "--kubeconfig", str(cluster.kubeconfig),
             "--policy", args.policy, "--target", str(folder / PODS_CSV), "--filter-mode", args.filter_mode,
             "--log-level", "WARNING"],
            stdout=extender_log, stderr=subprocess.STDOUT, start_new_session=True)
        while not _up(port):
            if extender.poll() is not None:
                sys.exit(f"extender exited; see {work / 'extender.log'}")
            time.sleep(0.3)
        binary = find_binaries().kube_scheduler
        ome = Scheduler(binary, "ome-scheduler", scheduler_config(cluster.kubeconfig, "ome-scheduler",
                                                                  f"http://127.0.0.1:{port}"), work, cluster.kubeconfig)
        stock = Scheduler(binary, "stock-scheduler", scheduler_config(cluster.kubeconfig, "stock-scheduler", None),
                          work, cluster.kubeconfig)
        schedulers = [ome, stock]
        watch = BindWatch(cluster.http(timeout=60))
        watch.start()
        rng = np.random.default_rng(args.seed)
        runs: list[dict[str, Any]] = []
        for r in range(args.rounds):
            shapes = [trace[int(i)] for i in rng.choice(len(trace), size=args.batch, replace=False)]
            order = [ome, stock] if r % 2 == 0 else [stock, ome]
            for sched in order:
                names = [f"{sched.name[:3]}-{r}-{k:04d}" for k in range(args.batch)]
                bodies = [pod_body(n, sched.name, p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_milli)
                          for n, p in zip(names, shapes)]
                with ThreadPoolExecutor(16) as pool:
                    codes = list(pool.map(lambda b: http.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=b).status_code,
                                          bodies))
                assert all(c == 201 for c in codes), Counter_of(codes)
                started = time.monotonic()
                sched.start()
                deadline = started + 600
                while not watch.settled(names) and time.monotonic() < deadline:
                    if sched.proc is not None and sched.proc.poll() is not None:
                        sys.exit(f"{sched.name} exited; see {work}")
                    time.sleep(0.2)
                sched.stop()
                times = sorted(watch.times(names))
                span = times[-1] - times[0] if len(times) > 1 else float("nan")
                runs.append({"round": r, "scheduler": sched.name, "bound": len(times), "pods": len(names),
                             "unschedulable": watch.failed(names),
                             "first_bind_after_start_s": round(times[0] - started, 2) if times else None,
                             "bind_span_s": round(span, 3),
                             "pods_per_s": round((len(times) - 1) / span, 1) if len(times) > 1 else 0.0})
                print(json.dumps(runs[-1]), flush=True)
        total = {s: sum(x["bound"] - 1 for x in runs if x["scheduler"] == s) /
                 sum(x["bind_span_s"] for x in runs if x["scheduler"] == s) for s in ("ome-scheduler", "stock-scheduler")}
        result["runs"] = runs
        result["pods_per_s"] = {k: round(v, 1) for k, v in total.items()}
        result["ratio"] = round(total["ome-scheduler"] / total["stock-scheduler"], 3)
        result["goal"] = "ratio >= 0.8"
        result["goal_met"] = result["ratio"] >= 0.8
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        result["extender_conflicts"] = next((float(line.split()[1]) for line in metrics.splitlines()
                                             if line.startswith("ome_extender_conflicts ")), None)
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
    finally:
        for s in schedulers:
            s.stop()
        if extender is not None and extender.poll() is None:
            os.killpg(extender.pid, signal.SIGTERM)
            extender.wait(10)
        cluster.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _up(port: int) -> bool:
    """The extender answers /healthz with 200 (its cache is loaded)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def Counter_of(codes: list[int]) -> dict[int, int]:
    from collections import Counter

    return dict(Counter(codes))


if __name__ == "__main__":
    main()
