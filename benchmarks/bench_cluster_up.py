"""Time `ome cluster up --nodes-from openb --detach` until 1,213 kwok GPU nodes are Ready; JSON out.

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/bench_cluster_up.py [--runs 3]
Goal: ready in at most 60 s on 2 cores with the binaries cached. The load average is printed
beside each run because the start is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from ome.simulations.cluster.cli import cluster_app; cluster_app()"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "openb"
            load = os.getloadavg()[0]
            began = time.monotonic()
            up = subprocess.run([*CLI, "up", "--nodes-from", "openb", "--detach", "--dir", str(folder)],
                                capture_output=True, text=True, timeout=600)
            elapsed = time.monotonic() - began
            subprocess.run([*CLI, "down", "--dir", str(folder)], capture_output=True, text=True, timeout=120)
            if up.returncode != 0:
                raise SystemExit(up.stderr[-3000:])
            runs.append({"ready_s": round(elapsed, 1), "load_average_at_start": round(load, 2)})
    print(json.dumps({"nodes": 1213, "cores": os.cpu_count(), "runs": runs,
                      "median_ready_s": statistics.median(r["ready_s"] for r in runs), "goal_s": 60}, indent=2))


if __name__ == "__main__":
    main()
