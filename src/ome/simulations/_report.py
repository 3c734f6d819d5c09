"""Aggregation over seeds, the JSON report and the Figure 9(a)-style plot."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._replay import LEVELS, ReplayResult


def _stats(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def summarize(results: Iterable[ReplayResult]) -> dict[str, Any]:
    """One policy's runs (one per seed) -> the JSON block of the report."""
    runs = list(results)
    out: dict[str, Any] = {"unallocated_gpu_pct": {}, "frag_ratio_pct": {}}
    for level in LEVELS:
        values = [r.unallocated_pct[level] for r in runs if level in r.unallocated_pct]
        if len(values) == len(runs) and values:
            out["unallocated_gpu_pct"][str(level)] = _stats(values)
            bounds = [r.extra[f"bound_{level}"] for r in runs if f"bound_{level}" in r.extra]
            if len(bounds) == len(runs):
                out["unallocated_gpu_pct"][str(level)]["bound"] = round(statistics.median(bounds), 2)
        ratios = [r.frag_ratio_pct[level] for r in runs if level in r.frag_ratio_pct]
        if len(ratios) == len(runs) and ratios:
            out["frag_ratio_pct"][str(level)] = _stats(ratios)
    seconds = sum(r.seconds for r in runs)
    decisions = sum(r.placed + r.failed for r in runs)
    out["pods_per_second"] = round(decisions / seconds, 1) if seconds > 0 else 0.0
    out["placed_pods"] = _stats([r.placed for r in runs], 0)
    out["failed_pods"] = _stats([r.failed for r in runs], 0)
    out["allocated_gpu_pct_final"] = _stats([r.allocated_pct_final for r in runs])
    # the settings that disturb running pods
    for count in ("moves", "preemptions", "evicted", "evicted_lost", "reclaims", "reclaim_evicted", "refills",
                  "refill_evicted"):
        values = [r.extra[count] for r in runs if count in r.extra]
        if values:
            out[count] = _stats(values, 0)
    plan = [r.extra for r in runs if "plan_adopted" in r.extra]
    if plan:  # ome-plan: its plan (one per scenario) and the check it passed or failed
        out["plan"] = {"adopted": bool(plan[0]["plan_adopted"]),
                       **{k[len("plan_"):]: round(v, 2) for k, v in plan[0].items() if k.startswith("plan_") and k != "plan_adopted"}}
    return out


def report(
    trace: str, nodes: int, gpus: int, seeds: Sequence[int], inflation: float, by_policy: Mapping[str, list[ReplayResult]]
) -> dict[str, Any]:
    return {
        "trace": trace,
        "nodes": nodes,
        "gpus": gpus,
        "seeds": list(seeds),
        "inflation": inflation,
        "policies": {name: summarize(runs) for name, runs in by_policy.items()},
    }


def write_json(data: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def plot(by_policy: Mapping[str, list[ReplayResult]], path: Path, title: str) -> None:
    """Unallocated GPU % against arrived workload: median line and min-max band per policy, and the
    optimum's proven bound (dotted) where a setting reports one. Left 75..130 % (the paper's
    Figure 9(a)), right the same from 95 % with the y axis fitted, where the policies part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (full, zoom) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    xs = list(range(75, 131))
    top = 0.0
    for ax in (full, zoom):
        ax.plot(xs, [max(0.0, 100.0 - x) for x in xs], "k--", lw=1, label="ideal (100 - x)")
    for name, runs in by_policy.items():
        px = [x for x in xs if all(x in r.curve for r in runs)]
        if not px:
            continue
        med = [statistics.median(r.curve[x] for r in runs) for x in px]
        lo = [min(r.curve[x] for r in runs) for x in px]
        hi = [max(r.curve[x] for r in runs) for x in px]
        top = max([top, *(m for x, m in zip(px, hi) if x >= 100)])
        bx = [x for x in px if all(f"bound_{x}" in r.extra for r in runs)]
        bounds = [statistics.median(r.extra[f"bound_{x}"] for r in runs) for x in bx]
        for ax in (full, zoom):
            # A setting solved at the reported levels only (the optimum) gets markers there.
            (line,) = ax.plot(px, med, lw=1.8, label=name, marker="o" if len(px) < 20 else None, ms=3)
            ax.fill_between(px, lo, hi, color=line.get_color(), alpha=0.2)
            if bx:
                ax.plot(bx, bounds, ":", color=line.get_color(), lw=1.5, label=f"{name}: proven bound")
    full.set_ylim(0, 30)
    full.set_title(title)
    zoom.set_xlim(95, 130)
    zoom.set_ylim(0, max(5.0, 1.15 * top))
    zoom.set_title("from 95 % arrived")
    for ax in (full, zoom):
        ax.set_xlabel("arrived workload (% of GPU capacity)")
        ax.grid(alpha=0.3)
    full.set_ylabel("unallocated GPU (%)")
    full.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
