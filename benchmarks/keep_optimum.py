"""How much of a policy's distance to the optimum comes from which pods it had to serve.

The offline optimum may leave any arrived pod out (a 0.81-GPU pod, say, so that a whole-GPU
pod gets its GPU). An online policy that places every pod that fits cannot. This replays a
policy to an arrived level and then solves the optimum in up to six ways, each with the same time
limit, on the same arrived pods:

- free: any subset of the pods (the "optimum" row of docs/placement.md);
- keep_cpu: every CPU-only pod the policy placed is served too (they take CPU that the free
  optimum gives to GPU pods); the GPU pods are free;
- keep_sharing: at least as many pods of each GPU-sharing shape as the policy placed;
- keep_gpu: at least as many pods of every GPU shape as the policy placed;
- keep_all: every pod the policy placed, CPU-only ones too (a full repack with unlimited moves);
- keep_priority: every pod of priority above 0 the policy placed (the trace's qos: all but the
  best-effort ones), best-effort pods free (a repack that may preempt best-effort pods).

`--policy` may be an online policy (ome, fgd, ...) or a rescheduling setting (ome-reclaim,
ome-preempt, ome-repack, ...): its state where the level is reached is what is kept. keep_priority
on ome-reclaim at 120 % asks: serving the production pods that setting serves (it never evicts
one), how much GPU could any packing allocate?

Prints JSON: per seed the policy's unallocated GPU % and each optimum's best found and proven
bound (a bound on the unconstrained problem is also one on the kept problems; it is tighter
only where the kept LP converged in time), then medians over seeds.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/keep_optimum.py --seeds 42,43 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from where_waste import replay_to_level  # benchmarks/ is on sys.path when run as a script

from ome.domain import Assignment, PodRequest
from ome.solver.cpsat import SolverSettings, solve_optimum

KEEPS = {
    "free": None,
    "keep_cpu": lambda pod: pod.num_gpu == 0,
    "keep_sharing": lambda pod: pod.is_sharing,
    "keep_gpu": lambda pod: pod.num_gpu > 0,
    "keep_all": lambda pod: True,
    "keep_priority": lambda pod: pod.priority > 0,
}


def placed_by(trace: Path, policy: str, seed: int, level: int) -> tuple[tuple, list[PodRequest], list[Assignment], float]:
    """Nodes, the arrived pods at `level`, the policy's placements of them, and its unallocated GPU %."""
    nodes, prefix, cluster, result = replay_to_level(trace, policy, seed, level)
    capacity = cluster.gpu_capacity_milli
    by_name = {pod.name: pod for pod in prefix}
    index = {name: i for i, name in enumerate(cluster.names)}
    placed = [Assignment(by_name[name], index[node], gpus) for name, node, gpus in result.placements]
    return nodes, prefix, placed, 100 - 100 * cluster.allocated_gpu_milli() / capacity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default="default")
    ap.add_argument("--seeds", default="42", help="comma-separated arrival seeds")
    ap.add_argument("--level", type=int, default=100)
    ap.add_argument("--policy", default="ome")
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit per solve")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--solve", default=",".join(KEEPS), help=f"comma-separated, of {', '.join(KEEPS)}")
    args = ap.parse_args()
    solve = args.solve.split(",")
    if args.policy == "optimum":
        raise SystemExit("keep_optimum: --policy optimum has no state to keep; name a policy or a rescheduling setting")
    if unknown := set(solve) - set(KEEPS):
        raise SystemExit(f"keep_optimum: --solve {', '.join(sorted(unknown))} unknown; known: {', '.join(KEEPS)}")
    trace_dir = Path(os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    trace = trace_dir / f"openb_pod_list_{args.trace}.csv"
    if not trace.is_file():
        raise SystemExit(f"keep_optimum: {trace} not found (set OME_TRACE_DIR to the openb trace folder)")
    per_seed: dict[str, dict[str, object]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        nodes, pods, placed, online = placed_by(trace, args.policy, seed, args.level)
        capacity = sum(n.gpu_count for n in nodes) * 1000
        settings = SolverSettings(max_time_in_seconds=args.seconds, num_workers=args.workers, random_seed=seed)
        row: dict[str, object] = {
            args.policy: round(online, 3),
            "sharing_pods_arrived": sum(p.is_sharing for p in pods),
            "sharing_pods_placed": sum(a.pod.is_sharing for a in placed),
            "cpu_only_pods_placed": sum(not a.pod.num_gpu for a in placed),
        }
        for name in solve:
            keep = KEEPS[name]
            start = None if keep is None else [a for a in placed if keep(a.pod)]
            r = solve_optimum(nodes, pods, settings, start=start, keep_started=keep is not None)
            row[name] = {"best": round(100 - 100 * r.allocated_milli / capacity, 3),
                         "bound": round(100 - 100 * r.bound_milli / capacity, 3), "seconds": round(r.seconds, 1)}
        per_seed[str(seed)] = row
    rows = list(per_seed.values())
    median = {args.policy: round(statistics.median(r[args.policy] for r in rows), 3)}  # type: ignore[misc]
    for name in solve:
        median[name] = round(statistics.median(r[name]["best"] for r in rows), 3)  # type: ignore[index]
    print(json.dumps({"trace": args.trace, "level": args.level, "policy": args.policy, "seconds_per_solve": args.seconds,
                      "seeds": per_seed, "median_best": median}, indent=1))


if __name__ == "__main__":
    main()
