"""Per-pod decision latency of the online policies over the openb cluster (1,213 nodes).

Replays one seed of the default trace and times every place_one call. Prints JSON:
p50/p99/max wall milliseconds per decision, p50/p99 of the thread's CPU time per decision
(the same decisions without the time spent descheduled on a busy machine) and pods/s, per
policy, measured in one process.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/bench_policy.py --policy ome,fgd,bestfit

`ome-plan` is `ome` with its placement plan (solved first, --plan-seconds, not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ome.simulations import arrival_sequence, load_nodes, load_pods
from ome.solver import Bind, ClusterArrays, OmePolicy, Policy, TargetWorkload, make_policy, place_one


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="ome,fgd,bestfit")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pods", type=int, default=0, help="stop after this many pods (0: the whole 130 %% sequence)")
    ap.add_argument("--plan-seconds", type=float, default=30.0, help="CP-SAT time for ome-plan's plan")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    d = Path(args.trace_dir)
    nodes = load_nodes(d / "openb_node_list_gpu_node.csv")
    pods = load_pods(d / "openb_pod_list_default.csv").pods
    target = TargetWorkload.from_pods(pods)
    seq = arrival_sequence(pods, sum(n.gpu_count for n in nodes) * 1000, 1.3, args.seed)
    if args.pods:
        seq = seq[: args.pods]
    out = {"nodes": len(nodes), "pods": len(seq), "seed": args.seed, "policies": {}}
    for name in args.policy.split(","):
        policy: Policy
        if name == "ome-plan":
            from ome.solver.cpsat import SolverSettings, plan_slots

            policy = OmePolicy(target, plan=plan_slots(nodes, pods, settings=SolverSettings(max_time_in_seconds=args.plan_seconds)))
        else:
            policy = make_policy(name, seed=args.seed, target=target)
        cluster = ClusterArrays(nodes)
        rng = np.random.default_rng(args.seed)
        times, cpu_times = np.empty(len(seq)), np.empty(len(seq))
        for i, pod in enumerate(seq):
            t0, c0 = time.perf_counter(), time.thread_time()
            decision = place_one(cluster, pod, policy, rng)
            times[i], cpu_times[i] = time.perf_counter() - t0, time.thread_time() - c0
            if isinstance(decision, Bind):
                cluster.allocate(pod, decision.node, decision.gpus)
                policy.observe(cluster, pod, decision.node, decision.gpus)
        ms, cpu_ms = times * 1000, cpu_times * 1000
        out["policies"][name] = {
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3),
            # CPU time of the deciding thread: the decision's own cost, without the time the
            # process spent descheduled by other work on a shared machine.
            "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
            "cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 3),
            "pods_per_second": round(len(seq) / times.sum(), 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
