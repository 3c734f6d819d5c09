"""Markdown table: our replays (JSON reports) beside FGD's published medians.

    .venv/bin/python benchmarks/compare_fgd.py out/traces [--level 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

PUBLISHED = ("01-Random", "02-DotProd", "03-GpuClustering", "04-GpuPacking", "05-BestFit", "06-FGD")


def published(trace_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    rows = csv.DictReader((trace_dir / "fgd_expected_results" / "anchor_summary_unalloc_gpu_pct.csv").open())
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if r["stat"] == "median":
            out[(r["workload"], r["sc_policy"])] = {k.rsplit("_", 1)[1]: float(v) for k, v in r.items() if k.startswith("unalloc")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--level", default="100")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    pub = published(Path(args.trace_dir))
    reports = sorted(Path(args.folder).glob("*.json"))
    ours = sorted({p for f in reports for p in json.loads(f.read_text())["policies"]})
    head = ["trace", *[f"{p} (ours)" for p in ours], "FGD (published)", "BestFit (published)", "ome / FGD", "ome <= FGD at every level"]
    print(f"unallocated GPU % at {args.level} % arrived, median over seeds\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for f in reports:
        data = json.loads(f.read_text())
        trace = data["trace"]
        fgd = pub.get((trace, "06-FGD"), {})
        cells = [trace.replace("openb_pod_list_", "")]
        for p in ours:
            block = data["policies"].get(p, {}).get("unallocated_gpu_pct", {})
            cells.append(f"{block[args.level]['median']:.2f}" if args.level in block else "-")
        cells.append(f"{fgd.get(args.level, float('nan')):.2f}")
        cells.append(f"{pub.get((trace, '05-BestFit'), {}).get(args.level, float('nan')):.2f}")
        ome = data["policies"].get("ome", {}).get("unallocated_gpu_pct", {})
        if ome and fgd:
            cells.append(f"{ome[args.level]['median'] / fgd[args.level]:.2f}")
            worse = [lv for lv, v in fgd.items() if lv in ome and ome[lv]["median"] > v]
            cells.append("yes" if not worse else "no (" + ", ".join(worse) + ")")
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
