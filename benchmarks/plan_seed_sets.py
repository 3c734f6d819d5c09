"""`ome-plan` on one trace: its plan solved once, then replayed on each seed set with it.

`ome simulate --policy ome-plan` solves the plan in every run, so two seed sets measured by two
runs may follow two plans (CP-SAT's time-limited search is not reproducible on 2 threads).
This script solves it once (`plan_for`, the same call `ome simulate` makes) and replays every
seed set with that plan, so the seed sets differ only in their arrivals. Prints JSON: the
plan's check, and per seed set the report block (`ome simulate --json`'s) of `ome-plan`.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/plan_seed_sets.py --trace gpushare40
        [--seed-sets 42-51,1-10] [--solver-seconds 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ome.simulations._report import summarize
from ome.simulations._run import OME_PLAN, Scenario, Task, plan_for, run_task


def seed_set(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default="default")
    ap.add_argument("--seed-sets", default="42-51,1-10")
    ap.add_argument("--solver-seconds", type=float, default=None, help="CP-SAT seconds per candidate plan")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    trace_dir = Path(os.environ["OME_TRACE_DIR"])
    scenario = Scenario(str(trace_dir / f"openb_pod_list_{args.trace}.csv"), None, solver_seconds=args.solver_seconds)
    plan = plan_for(scenario)
    out: dict[str, object] = {"trace": args.trace, "plan": {"adopted": plan.adopted, "planned_pct": round(plan.planned_pct, 2),
                                                             **{k: round(v, 3) for k, v in plan.stats.items()}}}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for text in args.seed_sets.split(","):
            tasks = [Task(scenario, OME_PLAN, seed) for seed in seed_set(text)]
            results = list(pool.map(run_task, tasks, [plan] * len(tasks)))
            block = summarize(results)
            out[text] = {"unallocated_gpu_pct": {level: v["median"] for level, v in block["unallocated_gpu_pct"].items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
