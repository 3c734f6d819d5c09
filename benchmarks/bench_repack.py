"""A full-cluster repack on an openb trace (default: the default trace): an online policy
(default BestFit) up to an arrived level, then one ome.solver.cpsat.repack of everything
placed plus everything waiting.

Prints JSON: pods placed / waiting before, GPU unallocated % before and after, the bound
(the aggregated LP over the GPU pods, the repack's own) and the gap, moves made against the
budget, seconds. That bound ignores that every running pod must stay placed; with
--kept-bound-seconds S the optimum obliged to keep every running pod is solved for S seconds
(after the repacks, outside their time) and its proven bound, what no repack of these pods can
beat with any number of moves, is reported too, with each run's gap to it.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/bench_repack.py --level 100 --seconds 55
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ome.domain import Assignment
from ome.simulations import arrival_sequence, load_nodes, load_pods
from ome.simulations._offline import level_prefixes
from ome.solver import Bind, ClusterArrays, make_policy, place_one
from ome.solver.cpsat import SolverSettings, repack, solve_optimum


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default="default", help="openb_pod_list_<trace>.csv in the trace folder")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--level", type=int, default=100, help="arrived GPU demand, %% of capacity")
    ap.add_argument("--policy", default="bestfit", help="online policy that builds the starting state")
    ap.add_argument("--budget", default="1000,100000", help="move budgets, comma-separated")
    ap.add_argument("--seconds", type=float, default=55.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kept-bound-seconds", type=float, default=0.0,
                    help="also solve the optimum keeping every running pod for this long, for its bound (0: no)")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    d = Path(args.trace_dir)
    nodes = load_nodes(d / "openb_node_list_gpu_node.csv")
    trace = d / f"openb_pod_list_{args.trace}.csv"
    if not trace.is_file():
        raise SystemExit(f"bench_repack: {trace} not found (set OME_TRACE_DIR or --trace-dir to the openb trace folder)")
    pods = load_pods(trace).pods
    capacity = sum(n.gpu_count for n in nodes) * 1000
    seq = arrival_sequence(pods, capacity, 1.3, args.seed)
    seq = seq[: level_prefixes(seq, capacity, (args.level,))[args.level]]
    cluster, policy = ClusterArrays(nodes), make_policy(args.policy, seed=args.seed, pods=pods)
    rng = np.random.default_rng(args.seed)
    placed: list[Assignment] = []
    waiting = []
    for pod in seq:
        decision = place_one(cluster, pod, policy, rng)
        if isinstance(decision, Bind):
            placed.append(cluster.allocate(pod, decision.node, decision.gpus))
            policy.observe(cluster, pod, decision.node, decision.gpus)
        else:
            waiting.append(pod)
    pct = lambda milli: round(100 - 100 * milli / capacity, 3)  # noqa: E731
    out = {
        "trace": args.trace, "seed": args.seed, "level": args.level, "policy": args.policy, "nodes": len(nodes),
        "pods_placed": len(placed), "pods_waiting": len(waiting), "num_workers": args.workers,
        "time_limit_s": args.seconds, "runs": [],
    }
    for budget in (int(b) for b in args.budget.split(",")):
        settings = SolverSettings(max_time_in_seconds=args.seconds, num_workers=args.workers, random_seed=args.seed)
        t0 = time.perf_counter()
        r = repack(nodes, placed, budget, settings, pending=waiting)
        out["runs"].append({
            "budget_moves": budget, "moves": len(r.moves), "placed_from_waiting": len(r.placed),
            "unallocated_pct_before": pct(r.allocated_before), "unallocated_pct_after": pct(r.allocated_after),
            "bound_unallocated_pct": pct(r.bound), "gap_points": round(100 * (r.bound - r.allocated_after) / capacity, 3),
            "seconds": round(time.perf_counter() - t0, 2),
        })
    if args.kept_bound_seconds > 0:
        settings = SolverSettings(max_time_in_seconds=args.kept_bound_seconds, num_workers=args.workers,
                                  random_seed=args.seed)
        kept = solve_optimum(nodes, [a.pod for a in placed] + waiting, settings, start=placed, keep_started=True)
        out["kept_bound_unallocated_pct"] = pct(kept.bound_milli)
        out["kept_best_unallocated_pct"] = pct(kept.allocated_milli)
        for run in out["runs"]:  # type: ignore[attr-defined]
            run["gap_to_kept_bound_points"] = round(run["unallocated_pct_after"] - out["kept_bound_unallocated_pct"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
