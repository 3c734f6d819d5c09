"""Stand-ins for the trace variants kept out of ../shared (GPU-type-constrained, heavier multi-GPU),
to check that `ome` generalises. Writes CSVs into --out (git-ignored out/ by default, never the repo).

    OME_TRACE_DIR=../shared/data/alibaba-gpu-2023 .venv/bin/python benchmarks/make_variants.py --out out/variants
    .venv/bin/ome simulate --trace out/variants/openb_pod_list_gpuspec33.csv \\
        --nodes $OME_TRACE_DIR/openb_node_list_gpu_node.csv --policy ome,fgd --seeds 4 --first-seed 1

- gpuspec<P>: P % of the default trace's GPU pods accept only one or two GPU models, drawn in
  proportion to each model's GPU count (4- and 8-GPU pods only models with 8-GPU nodes).
- multigpu<S>: multigpu30 plus resampled multi-GPU pods until they are S % of GPU demand, then
  single-GPU pods dropped at random until total GPU demand is back to multigpu30's (which
  raises the share further: 0.47 for S = 40, 0.70 for S = 50; the script prints it).
These are our guesses at the held-out variants, not the originals.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

MODELS = {"G2": 4392, "T4": 842, "P100": 265, "V100M16": 195, "G3": 312, "V100M32": 204}
EIGHT_GPU_MODELS = {"G2", "G3", "V100M32"}


def demand(rows: list[dict[str, str]], multi_only: bool = False) -> int:
    return sum(int(r["num_gpu"]) * int(r["gpu_milli"]) for r in rows if not multi_only or int(r["num_gpu"]) > 1)


def gpuspec(rows: list[dict[str, str]], share: float, rnd: random.Random) -> list[dict[str, str]]:
    names, weights = list(MODELS), list(MODELS.values())
    out = []
    for r in rows:
        r = dict(r)
        if r["num_gpu"] != "0" and rnd.random() < share:
            chosen: set[str] = set()
            count = rnd.choice([1, 1, 2])
            while len(chosen) < count:
                chosen.add(rnd.choices(names, weights)[0])
            if int(r["num_gpu"]) >= 4:
                chosen = (chosen & EIGHT_GPU_MODELS) or {"G2"}
            r["gpu_spec"] = "|".join(sorted(chosen))
        out.append(r)
    return out


def multigpu(rows: list[dict[str, str]], share: float, rnd: random.Random) -> list[dict[str, str]]:
    multi = [r for r in rows if int(r["num_gpu"]) > 1]
    out, total, k = list(rows), demand(rows), 0
    while demand(out, True) < share * demand(out):
        r = dict(rnd.choice(multi))
        r["name"] = f"{r['name']}-m{k}"
        out.append(r)
        k += 1
    while demand(out) > total:
        i = rnd.randrange(len(out))
        if int(out[i]["num_gpu"]) == 1:
            out.pop(i)
    return out


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{path}: {len(rows)} pods, multi-GPU share of GPU demand {demand(rows, True) / demand(rows):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    ap.add_argument("--out", default="out/variants")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    src, out = Path(args.trace_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    default = list(csv.DictReader((src / "openb_pod_list_default.csv").open()))
    heavy = list(csv.DictReader((src / "openb_pod_list_multigpu30.csv").open()))
    for share in (0.20, 0.33):
        write(out / f"openb_pod_list_gpuspec{round(share * 100)}.csv", gpuspec(default, share, random.Random(args.seed)))
    for share in (0.40, 0.50):
        write(out / f"openb_pod_list_multigpu{round(share * 100)}.csv", multigpu(heavy, share, random.Random(args.seed + 4)))


if __name__ == "__main__":
    main()
