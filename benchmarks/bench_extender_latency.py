"""Per-verb latency of the OME extender at the openb scale (1,213 nodes), as kube-scheduler sees it.

A server process runs the real app (uvicorn, FastAPI, the Extender with the openb target
workload and the extender's default policy, ome.scheduler.DEFAULT_POLICY = "ome", unless
--policy names another) over an in-memory apiserver (FakeKube: binds succeed and are fed back as
watch events; the pods are listed into the extender's cache first, as its pod watch delivers a
pod before kube-scheduler filters it, unless --pods-unseen). The client sends, for each of
--pods trace pods (seeded sample, in order),
filter (Pod + 1,213 NodeNames, as nodeCacheCapable kube-scheduler does), prioritize with all
1,213 names (the most --filter-mode feasible ever sends), then bind to the best-scored node;
each list in a new order (seeded shuffle), as kube-scheduler's parallel filter produces them
(a list seen before would let a cache answer, which a real scheduler never gets);
then --preempts preempt calls for large high-priority pods over 64 nodes each. Round-trip times
are measured on the client over one keep-alive connection; the app's own time comes back in a
Server-Timing header; "engine_only" repeats filter and prioritize in-process without HTTP.
The client does not collect garbage inside a timed call (it collects between calls), and
--same-cpu runs client and server on one CPU (see its help).

    .venv/bin/python benchmarks/bench_extender_latency.py [--pods 2000] [--policy ome]
        [--filter-mode chosen|feasible] [--same-cpu] [--pods-unseen]

Prints and writes JSON: p50/p90/p99/max in ms per verb, and the goal (p99 <= 5 ms for filter
and prioritize) met or not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import orjson as fastjson  # the client's own JSON work competes with the server for the cores
except ImportError:  # pragma: no cover
    fastjson = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ome.scheduler import DEFAULT_POLICY  # noqa: E402
TRACE_DIRS = [os.environ.get("OME_TRACE_DIR", ""), str(REPO.parent / "shared" / "data" / "alibaba-gpu-2023"),
              "/work/shared/data/alibaba-gpu-2023"]
NODES_CSV = "openb_node_list_gpu_node.csv"
PODS_CSV = "openb_pod_list_default.csv"


def trace_dir() -> Path:
    for d in TRACE_DIRS:
        if d and (Path(d) / NODES_CSV).is_file():
            return Path(d)
    sys.exit("openb trace not found: set OME_TRACE_DIR")


def workload(seed: int, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(node manifests, pod manifests): the openb GPU nodes and a seeded sample of the default trace."""
    from ome.simulations._traces import load_nodes, load_pods
    from ome.simulations.cluster import manifest

    folder = trace_dir()
    nodes = [manifest(n) for n in load_nodes(folder / NODES_CSV)]
    trace = load_pods(folder / PODS_CSV).pods
    picks = np.random.default_rng(seed).choice(len(trace), size=count, replace=count > len(trace))
    pods = []
    for k, i in enumerate(picks):
        p = trace[int(i)]
        limits = {"cpu": f"{p.cpu_milli}m", "memory": f"{p.memory_mib}Mi"}
        if p.num_gpu and not p.is_sharing:
            limits["nvidia.com/gpu"] = str(p.num_gpu)
        else:
            limits["ome.io/gpu-milli"] = str(p.gpu_milli)
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"b{k:05d}", "namespace": "bench", "uid": f"uid-{k:05d}",
                                  "labels": {"app": "bench"}, "annotations": {}},
                     "spec": {"schedulerName": "ome-scheduler", "priority": 0, "containers": [
                         {"name": "main", "image": "registry.invalid/serve:1",
                          "resources": {"limits": limits, "requests": limits}}]},
                     "status": {"phase": "Pending"}})
    return nodes, pods


def serve(port: int, seed: int, count: int, policy: str, filter_mode: str, unseen: bool) -> None:
    import uvicorn

    from ome.scheduler import Extender, ExtenderSettings, FakeKube, create_app
    from ome.scheduler._target import pods_from_csv
    from ome.solver import TargetWorkload

    nodes, pods = workload(seed, count)
    target_pods = pods_from_csv(trace_dir() / PODS_CSV)  # as `ome extender serve --target` does
    engine = Extender(ExtenderSettings(policy=policy, filter_mode=filter_mode),
                      target=TargetWorkload.from_pods(target_pods), warm_shapes=target_pods)
    kube = FakeKube(on_pod=engine.pod_event)
    for pod in pods:
        kube.pods[("bench", pod["metadata"]["name"])] = pod
    engine.replace_nodes(nodes)
    engine.replace_pods([] if unseen else pods)
    engine.warm()
    uvicorn.run(create_app(engine, kube, watch=False), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


def encode(obj: Any) -> bytes:
    return fastjson.dumps(obj) if fastjson is not None else json.dumps(obj).encode()


def decode(data: bytes) -> Any:
    return fastjson.loads(data) if fastjson is not None else json.loads(data)


class RawClient:
    """One keep-alive HTTP/1.1 connection on a bare socket: each request goes out in one send and
    the reply is read by its Content-Length (the app always sends one). http.client's reply
    parsing alone cost more than 0.1 ms a call, which kube-scheduler's Go client does not pay."""

    class Reply:
        def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
            self.status_code, self.headers, self.content = status, headers, content

        def json(self) -> Any:
            return decode(self.content)

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> RawClient.Reply:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(content)}\r\n"
                          f"{head}\r\n".encode() + content)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv()
        raw, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = int(fields["content-length"])
        while len(rest) < size:
            rest += self._recv()
        self.pending = rest[size:]
        return self.Reply(int(lines[0].split()[1]), fields, rest[:size])

    def _recv(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the benchmark server closed the connection")
        return data


def server_ms(response: Any) -> float:
    """The app's own time for the call (Server-Timing: app;dur=...), in seconds."""
    value = response.headers.get("server-timing", "app;dur=nan")
    return float(value.split("dur=")[1]) / 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1000
    return {"n": len(samples), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p90_ms": round(float(np.percentile(a, 90)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "max_ms": round(float(a.max()), 3)} if samples else {"n": 0}


def engine_only(args: argparse.Namespace) -> dict[str, Any]:
    """The same filter/prioritize sequence on an Extender in this process: the decision cost
    without HTTP and JSON (pod translation included)."""
    from ome.scheduler import Extender, ExtenderSettings
    from ome.scheduler._target import pods_from_csv
    from ome.solver import TargetWorkload

    nodes, pods = workload(args.seed, args.pods)
    target_pods = pods_from_csv(trace_dir() / PODS_CSV)
    engine = Extender(ExtenderSettings(policy=args.policy, filter_mode=args.filter_mode),
                      target=TargetWorkload.from_pods(target_pods), warm_shapes=target_pods)
    engine.replace_nodes(nodes)
    engine.replace_pods([] if args.pods_unseen else pods)
    engine.warm()
    names = [n["metadata"]["name"] for n in nodes]
    order = np.random.default_rng(args.seed + 1)
    times: dict[str, list[float]] = {"filter": [], "prioritize": []}
    for pod in pods:
        asked = [names[i] for i in order.permutation(len(names))]
        t = time.perf_counter()
        info = engine.request_pod_info(pod)
        out = engine.filter(info, asked)
        times["filter"].append(time.perf_counter() - t)
        asked = [names[i] for i in order.permutation(len(names))]
        t = time.perf_counter()
        engine.prioritize(engine.request_pod_info(pod), asked)
        times["prioritize"].append(time.perf_counter() - t)
        if out.chosen:
            engine.begin_bind(info.uid, info.namespace, info.name, out.chosen)
            engine.end_bind(info.uid, out.chosen, True)
    return {v: percentiles(t) for v, t in times.items()}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--preempts", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--policy", default=DEFAULT_POLICY, help="default: the extender's (%(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "reports" / "bench_extender_latency.json")
    ap.add_argument("--filter-mode", default="chosen", choices=["chosen", "feasible"])
    ap.add_argument("--pods-unseen", action="store_true",
                    help="keep the pods out of the extender's cache until bound (by default they are listed "
                         "into it first, as the pod watch delivers a pod before kube-scheduler filters it)")
    ap.add_argument("--same-cpu", action="store_true",
                    help="run client and server on one CPU: on a small VM, waking a process on the other vCPU "
                         "costs up to milliseconds, which this takes out of the round trip")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.seed, args.pods, args.policy, args.filter_mode, args.pods_unseen)
        return

    import httpx

    # uvicorn's "auto" picks httptools and uvloop when they are installed, else h11 and asyncio.
    result_env = {"http_parser": "httptools" if _has("httptools") else "h11",
                  "event_loop": "uvloop" if _has("uvloop") else "asyncio",
                  "json": "orjson" if _has("orjson") else "json"}

    if args.same_cpu:  # inherited by the server process
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--pods", str(args.pods),
                               "--seed", str(args.seed), "--policy", args.policy, "--filter-mode", args.filter_mode,
                               *(["--pods-unseen"] if args.pods_unseen else [])])
    try:
        nodes, pods = workload(args.seed, args.pods)
        names = [n["metadata"]["name"] for n in nodes]
        order = np.random.default_rng(args.seed + 1)
        url = f"http://127.0.0.1:{port}"
        probe = httpx.Client(base_url=url, timeout=30, trust_env=False)
        deadline = time.monotonic() + 180
        while True:
            try:
                if probe.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("benchmark server did not start")
            time.sleep(0.2)
        client = RawClient(port)
        # The client's own garbage collections would land inside timed calls (kube-scheduler's Go
        # client has no such pauses): collect between calls instead, outside the timed windows.
        gc.collect()
        gc.freeze()
        gc.disable()
        times: dict[str, list[float]] = {"filter": [], "prioritize": [], "bind": [], "preempt": []}
        app_times: dict[str, list[float]] = {v: [] for v in times}
        sizes = {"filter_request_bytes": 0, "filter_response_bytes": 0}
        placed = 0
        headers = {"Content-Type": "application/json"}
        for k, pod in enumerate(pods):
            if k % 100 == 0:
                gc.collect(0)
            body = encode({"Pod": pod, "Nodes": None, "NodeNames": [names[i] for i in order.permutation(len(names))]})
            t = time.perf_counter()
            r = client.post("/filter", content=body, headers=headers)
            times["filter"].append(time.perf_counter() - t)
            app_times["filter"].append(server_ms(r))
            sizes["filter_request_bytes"] = max(sizes["filter_request_bytes"], len(body))
            sizes["filter_response_bytes"] = max(sizes["filter_response_bytes"], len(r.content))
            feasible = decode(r.content)["NodeNames"]
            if not feasible:
                continue
            # prioritize with every node (what --filter-mode feasible sends at most), whatever the mode
            body = encode({"Pod": pod, "Nodes": None, "NodeNames": [names[i] for i in order.permutation(len(names))]})
            t = time.perf_counter()
            r = client.post("/prioritize", content=body, headers=headers)
            times["prioritize"].append(time.perf_counter() - t)
            app_times["prioritize"].append(server_ms(r))
            host = max(decode(r.content), key=lambda h: h["Score"])["Host"]
            body = encode({"PodName": pod["metadata"]["name"], "PodNamespace": "bench",
                           "PodUID": pod["metadata"]["uid"], "Node": host})
            t = time.perf_counter()
            r = client.post("/bind", content=body, headers=headers)
            times["bind"].append(time.perf_counter() - t)
            app_times["bind"].append(server_ms(r))
            assert r.json() == {"Error": ""}, r.text
            placed += 1
        state = probe.get("/debug/state").json()
        by_node: dict[str, list[str]] = {}
        for uid, e in state["entries"].items():
            by_node.setdefault(e["node"], []).append(uid)
        busy = sorted(by_node, key=lambda n: -len(by_node[n]))[:64]
        rng = np.random.default_rng(args.seed)
        for k in range(args.preempts):
            big = json.loads(json.dumps(pods[0]))
            big["metadata"].update(name=f"vip{k}", uid=f"vip-{k}")
            big["spec"]["priority"] = 1000
            big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "8", "memory": "16Gi",
                                                                    "nvidia.com/gpu": str(int(rng.choice([4, 8])))}}
            victims = {n: {"Pods": [{"UID": u} for u in by_node[n]], "NumPDBViolations": 0} for n in busy}
            body = encode({"Pod": big, "NodeNameToVictims": None, "NodeNameToMetaVictims": victims})
            t = time.perf_counter()
            r = client.post("/preempt", content=body, headers=headers)
            times["preempt"].append(time.perf_counter() - t)
            app_times["preempt"].append(server_ms(r))
            assert r.status_code == 200, r.text
        server_metrics = probe.get("/metrics").text
    finally:
        gc.enable()
        server.terminate()
        server.wait(10)
    result = {
        "benchmark": "extender per-verb latency (client round trip over one keep-alive http.client connection)",
        "nodes": len(names), "pods": args.pods, "placed": placed, "policy": args.policy, "seed": args.seed,
        "filter_mode": args.filter_mode, "pods_in_cache_before_filter": not args.pods_unseen,
        "python": platform.python_version(), "cpus": os.cpu_count(), "same_cpu": args.same_cpu, **result_env,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "verbs": {v: percentiles(t) for v, t in times.items()},
        "verbs_server_side": {v: percentiles(t) for v, t in app_times.items()},
        **sizes,
        "goal": "p99 <= 5 ms for filter and prioritize",
    }
    result["engine_only"] = engine_only(args)
    result["goal_met"] = all(result["verbs"][v].get("p99_ms", 1e9) <= 5.0 for v in ("filter", "prioritize"))
    result["server_gpus_allocated"] = next((float(line.split()[1]) for line in server_metrics.splitlines()
                                            if line.startswith("ome_extender_gpus_allocated ")), None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
