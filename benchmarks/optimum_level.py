"""The offline optimum at one arrived level, per seed, with a chosen CP-SAT time limit.

`ome simulate --policy optimum` solves every reported level at 10 s each; this solves only
the levels asked for, for longer, to quote the physical limit beside one online figure.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/optimum_level.py \\
        --trace gpushare60 --seeds 42,43 --level 100 --seconds 20

Prints JSON: per seed the best unallocated GPU % found, the proven bound and the gap.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ome.simulations._offline import optimum_levels
from ome.simulations._run import Scenario, Task, sequence_for
from ome.solver.cpsat import SolverSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default="default")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--level", type=int, action="append", help="arrived %% (repeatable; default 100)")
    ap.add_argument("--seconds", type=float, default=20.0, help="CP-SAT time limit per level")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    path = Path(args.trace_dir) / f"openb_pod_list_{args.trace}.csv"
    if not path.is_file():
        raise SystemExit(f"trace not found: {path} (set --trace-dir or OME_TRACE_DIR)")
    levels = tuple(args.level or [100])
    settings = SolverSettings(max_time_in_seconds=args.seconds)
    out: dict[str, object] = {"trace": args.trace, "seconds_per_level": args.seconds, "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        nodes, seq = sequence_for(Task(Scenario(str(path), None), "optimum", seed))
        result = optimum_levels(nodes, seq, levels=levels, settings=settings)
        out["seeds"][str(seed)] = {  # type: ignore[index]
            str(level): {"best": round(b, 3), "bound": round(lb, 3), "gap": round(g, 3)} for level, (b, lb, g) in result.items()
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
