"""The offline optimum per arrived level on an openb trace, for one or more seeds.

Solves each asked level (default 90..130 %) with ome.solver.cpsat.solve_optimum, levels in
increasing order, each warm-started from the previous one (what `optimum_levels` does).
Asking for fewer levels gives each the whole time limit, to quote the physical limit beside
one online figure. Prints JSON: per seed and level the best and bound as unallocated GPU %,
the gap in points, seconds, status.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/bench_optimum.py --seconds 10
    .venv/bin/python benchmarks/bench_optimum.py --trace gpushare60 --seeds 42,43 --levels 100 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ome.simulations import arrival_sequence, load_nodes, load_pods
from ome.simulations._offline import level_prefixes, solve_levels
from ome.simulations._replay import LEVELS
from ome.solver.cpsat import SolverSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="42", help="comma-separated arrival seeds")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)), help="comma-separated arrived %% levels")
    ap.add_argument("--seconds", type=float, default=10.0, help="time limit per level")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trace", default="default")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    d = Path(args.trace_dir)
    nodes = load_nodes(d / "openb_node_list_gpu_node.csv")
    pods = load_pods(d / f"openb_pod_list_{args.trace}.csv").pods
    capacity = sum(n.gpu_count for n in nodes) * 1000
    levels = tuple(int(x) for x in args.levels.split(","))
    out: dict[str, object] = {
        "trace": args.trace, "nodes": len(nodes), "gpus": capacity // 1000,
        "seconds_per_level_limit": args.seconds, "num_workers": args.workers, "seeds": {},
    }
    for seed in (int(s) for s in args.seeds.split(",")):
        seq = arrival_sequence(pods, capacity, 1.3, seed)
        settings = SolverSettings(max_time_in_seconds=args.seconds, num_workers=args.workers, random_seed=seed)
        prefixes = level_prefixes(seq, capacity, levels)
        t0 = time.perf_counter()
        results = solve_levels(nodes, seq, levels, settings)
        per_level = {}
        for level, r in results.items():
            best = 100 - 100 * r.allocated_milli / capacity
            bound = 100 - 100 * r.bound_milli / capacity
            per_level[str(level)] = {
                "pods": prefixes[level], "best_unallocated_pct": round(best, 3), "bound_unallocated_pct": round(bound, 3),
                "gap_points": round(best - bound, 3), "seconds": round(r.seconds, 2), "status": r.status,
            }
        out["seeds"][str(seed)] = {"total_seconds": round(time.perf_counter() - t0, 2), "levels": per_level}  # type: ignore[index]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
