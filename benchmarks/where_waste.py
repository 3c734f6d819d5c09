"""Where the unallocated GPUs are at one arrived level: which GPU contents leave the holes.

    .venv/bin/python benchmarks/where_waste.py [--trace default] [--seed 42] [--level 100]
        [--policy ome,ome:fgd,fgd] [--top 12]

`ome:fgd` is `ome` with FGD's hole table (share_table="fgd"). For each policy, prints JSON:
unallocated GPU %, whole GPUs left free, the holes on GPUs that sharing pods hold (in GPUs),
the GPU contents (sizes of the sharing pods on one GPU) that leave the most hole, and the
GPUs the same sharing pods take when packed offline, first-fit decreasing, and the fewest
any packing of them can take (the LP bound), for comparison.
Needs OME_TRACE_DIR (the openb trace).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

from ome.domain import MILLI, Node, PodRequest
from ome.simulations import ReplayResult, Scenario, Task
from ome.simulations import replay_to_level as run_replay_to_level
from ome.simulations._run import load_scenario
from ome.solver import ClusterArrays, Policy, TargetWorkload, make_policy
from ome.solver.plugins._hole_prices import size_prices
from ome.solver.plugins._ome import OmePolicy


def build(name: str, target: TargetWorkload, seed: int) -> Policy:
    if name.startswith("ome:"):
        return OmePolicy(target, share_table=name.split(":", 1)[1])
    return make_policy(name, seed=seed, target=target)


def first_fit_decreasing(sizes: list[int]) -> int:
    """GPUs first-fit decreasing packs `sizes` (milli) into."""
    free: list[int] = []
    for s in sorted(sizes, reverse=True):
        for i, f in enumerate(free):
            if f >= s:
                free[i] -= s
                break
        else:
            free.append(MILLI - s)
    return len(free)


def lp_bound(sizes: list[int]) -> float:
    """The fewest GPUs any packing of `sizes` can take, fractionally: the LP's value, sum of count x price."""
    counts = Counter(sizes)
    prices = size_prices({s: float(n) for s, n in counts.items()})
    return sum(n * prices[s] for s, n in counts.items())


def replay_to_level(
    trace: Path, policy_name: str, seed: int, level: int
) -> tuple[tuple[Node, ...], list[PodRequest], ClusterArrays, ReplayResult]:
    """The replay `ome simulate` runs, stopped where `level` % is reached, keeping where each pod
    went: the nodes, the arrived pods, the cluster then, and the result. `policy_name` may also be
    a rescheduling setting (ome-reclaim, ome-repack, ...)."""
    task = Task(Scenario(str(trace), None), policy_name, seed)
    policy = None
    if policy_name.startswith("ome:"):
        policy = build(policy_name, TargetWorkload.from_pods(load_scenario(task.scenario)[1]), seed)
    state = run_replay_to_level(task, level, policy)
    return state.nodes, state.arrived, state.cluster, state.result


def analyse(trace: Path, policy_name: str, seed: int, level: int, top: int) -> dict[str, object]:
    _, prefix, cluster, result = replay_to_level(trace, policy_name, seed, level)
    capacity = cluster.gpu_capacity_milli
    by_name = {pod.name: pod for pod in prefix}
    contents: dict[tuple[str, int], list[int]] = defaultdict(list)
    for name, node, gpus in result.placements:
        if by_name[name].is_sharing:
            contents[(node, gpus[0])].append(by_name[name].gpu_milli)
    holes: Counter[tuple[int, ...]] = Counter()
    count: Counter[tuple[int, ...]] = Counter()
    for sizes in contents.values():
        key = tuple(sorted(sizes, reverse=True))
        holes[key] += MILLI - sum(sizes)
        count[key] += 1
    placed = [s for sizes in contents.values() for s in sizes]
    return {
        "policy": policy_name,
        "unallocated_pct": round(100 - 100 * cluster.allocated_gpu_milli() / capacity, 3),
        "whole_free_gpus": int((cluster.gpu_free[cluster.gpu_cap > 0] == MILLI).sum()),
        "sharing_gpus": len(contents),
        "sharing_holes_gpus": round(sum(holes.values()) / MILLI, 2),
        "sharing_gpus_first_fit_decreasing": first_fit_decreasing(placed),
        "sharing_gpus_lp_bound": round(lp_bound(placed), 1),
        "sharing_pods_placed": len(placed),
        "top_contents": [
            {"sizes": list(k), "gpus": count[k], "holes_gpus": round(v / MILLI, 2)} for k, v in holes.most_common(top)
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default="default")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--level", type=int, default=100)
    ap.add_argument("--policy", default="ome,ome:fgd,fgd")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    trace_dir = Path(os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    trace = trace_dir / f"openb_pod_list_{args.trace}.csv"
    if not trace.is_file():
        raise SystemExit(f"where_waste: {trace} not found (set OME_TRACE_DIR to the openb trace folder)")
    out = {"trace": args.trace, "seed": args.seed, "level": args.level,
           "policies": [analyse(trace, p, args.seed, args.level, args.top) for p in args.policy.split(",")]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
