"""Markdown table: our replays (JSON reports) beside FGD's published medians, and optionally the
offline optimum (``bench_optimum.py`` reports) and a grid of per-trace plots.

    .venv/bin/python benchmarks/compare_fgd.py out/traces [--level 100]
    .venv/bin/python benchmarks/compare_fgd.py out/traces --optimum out/optimum --plot docs/img/placement-traces.png

`--policy NAME` (default ome) is the policy the ratio, "never worse" and excess columns are
for (e.g. ome-plan). With --optimum, two more columns: the optimum's median best packing
(median proven bound) at the level, and the excess ratio (NAME - optimum) / (FGD published -
optimum), the issue's
"close the distance FGD leaves" measure (medians of the seeds each report covers).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path

from ome.simulations._replay import LEVELS as REPLAY_LEVELS

PUBLISHED = ("01-Random", "02-DotProd", "03-GpuClustering", "04-GpuPacking", "05-BestFit", "06-FGD")
LEVELS = tuple(str(level) for level in REPLAY_LEVELS)  # the reports' keys


def published(trace_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    rows = csv.DictReader((trace_dir / "fgd_expected_results" / "anchor_summary_unalloc_gpu_pct.csv").open())
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if r["stat"] == "median":
            out[(r["workload"], r["sc_policy"])] = {k.rsplit("_", 1)[1]: float(v) for k, v in r.items() if k.startswith("unalloc")}
    return out


def optimum_medians(folder: Path | None, trace: str, level: str) -> tuple[float, float] | None:
    """(median best, median bound) unallocated % at `level` from folder/<trace>.json, if present."""
    if folder is None or not (folder / f"{trace}.json").exists():
        return None
    seeds = json.loads((folder / f"{trace}.json").read_text())["seeds"].values()
    rows = [s["levels"][level] for s in seeds if level in s["levels"]]
    if not rows:
        return None
    return (statistics.median(r["best_unallocated_pct"] for r in rows),
            statistics.median(r["bound_unallocated_pct"] for r in rows))


def plot(panels: list[tuple[str, dict, dict, tuple[float, float] | None]], level: str, path: Path) -> None:
    """One small panel per trace from 95 % arrived (at 90 % everything fits and every policy is at
    10 %): our policies' medians, FGD's and BestFit's published medians, and the optimum at
    `level` (marker: best found; bar down to the proven bound)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    shown = LEVELS[1:]
    xs = [int(x) for x in shown]
    for ax, (trace, ours, pub, opt) in zip(axes.flat, panels):
        for name, block in ours.items():
            ys = [block[lv]["median"] if lv in block else float("nan") for lv in shown]
            ax.plot(xs, ys, marker="o", ms=3, lw=1.6, label=f"{name} (ours)")
        for key, style, label in (("06-FGD", "k--", "FGD (published)"), ("05-BestFit", "k:", "BestFit (published)")):
            if key in pub:
                ax.plot(xs, [pub[key].get(lv, float("nan")) for lv in shown], style, lw=1.2, label=label)
        if opt is not None:
            best, bound = opt
            ax.errorbar([int(level)], [best], yerr=[[best - bound], [0]], fmt="*", color="tab:red", ms=9, capsize=3,
                        label=f"optimum at {level} % (bar: bound)")
        ax.set_title(trace, fontsize=10)
        ax.set_xticks(xs)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    spare = list(axes.flat)[len(panels):]
    for ax in spare:
        ax.axis("off")
    handles: dict[str, object] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    # The legend takes the first empty cell of the grid, or the bottom margin if there is none.
    if spare:
        spare[0].legend(list(handles.values()), list(handles), loc="center", fontsize=9)
    else:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(6, len(handles)), fontsize=9)
    fig.supxlabel("arrived workload, % of GPU capacity", fontsize=10)
    fig.supylabel("unallocated GPU %", fontsize=10)
    fig.tight_layout(rect=(0.01, 0.0 if spare else 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--level", default="100")
    ap.add_argument("--optimum", type=Path, help="folder of bench_optimum.py reports, <trace>.json")
    ap.add_argument("--plot", type=Path, help="write a grid of per-trace plots here (PNG)")
    ap.add_argument("--policy", default="ome", help="our policy the ratio, 'never worse' and excess columns are for")
    ap.add_argument("--trace-dir", default=os.environ.get("OME_TRACE_DIR", "../shared/data/alibaba-gpu-2023"))
    args = ap.parse_args()
    pub = published(Path(args.trace_dir))
    reports = sorted(Path(args.folder).glob("*.json"))
    ours = sorted({p for f in reports for p in json.loads(f.read_text())["policies"]})
    me = args.policy
    head = ["trace", *[f"{p} (ours)" for p in ours], "FGD (published)", "BestFit (published)", f"{me} / FGD",
            f"{me} <= FGD at every level"]
    if args.optimum:
        head += ["optimum (bound)", "excess ratio"]
    print(f"unallocated GPU % at {args.level} % arrived, median over seeds\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    panels = []
    for f in reports:
        data = json.loads(f.read_text())
        trace = data["trace"]
        short = trace.replace("openb_pod_list_", "")
        fgd = pub.get((trace, "06-FGD"), {})
        cells = [short]
        for p in ours:
            block = data["policies"].get(p, {}).get("unallocated_gpu_pct", {})
            cells.append(f"{block[args.level]['median']:.2f}" if args.level in block else "-")
        for row in (fgd, pub.get((trace, "05-BestFit"), {})):
            cells.append(f"{row[args.level]:.2f}" if args.level in row else "-")
        ome = data["policies"].get(me, {}).get("unallocated_gpu_pct", {})
        if ome and fgd:
            cells.append(f"{ome[args.level]['median'] / fgd[args.level]:.2f}")
            worse = [lv for lv, v in fgd.items() if lv in ome and ome[lv]["median"] > v]
            cells.append("yes" if not worse else "no (" + ", ".join(worse) + ")")
        else:
            cells += ["-", "-"]
        opt = optimum_medians(args.optimum, short, args.level)
        if args.optimum:
            cells.append(f"{opt[0]:.2f} ({opt[1]:.2f})" if opt else "-")
            ratio = "-"
            if opt and ome and args.level in ome and args.level in fgd and fgd[args.level] > opt[0]:
                ratio = f"{(ome[args.level]['median'] - opt[0]) / (fgd[args.level] - opt[0]):.2f}"
            cells.append(ratio)
        print("| " + " | ".join(cells) + " |")
        blocks = {p: data["policies"][p]["unallocated_gpu_pct"] for p in ours if p in data["policies"]}
        panels.append((short, blocks, {k: v for (w, k), v in pub.items() if w == trace}, opt))
    if args.plot:
        plot(panels, args.level, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)  # stdout is the table


if __name__ == "__main__":
    main()
