"""The target workload of fragmentation-aware policies: from a pod-list file or from the cluster."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from ome.domain import MILLI, InvalidInput, PodRequest
from ome.solver import TargetWorkload

REQUIRED = ("cpu_milli", "num_gpu", "gpu_milli")

# Used while the cluster has no GPU pod yet: one whole GPU, two, four, eight, and half a GPU.
FALLBACK = TargetWorkload.from_pods(
    [PodRequest(f"prior-{n}-{m}", 0, 0, n, m) for n, m in ((1, MILLI), (2, MILLI), (4, MILLI), (8, MILLI), (1, 500))],
    coverage=1.0,
)


def target_from_csv(path: Path) -> TargetWorkload:
    """Shapes of an openb-style pod list (columns cpu_milli, num_gpu, gpu_milli, optional gpu_spec)."""
    return TargetWorkload.from_pods(pods_from_csv(path))


def pods_from_csv(path: Path) -> list[PodRequest]:
    """The pods of an openb-style pod list (memory_mib when the file has it: the `ome` policy uses it)."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot open target workload: {exc.strerror}") from exc
    pods = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row in reader:
            try:
                num = int(float(row["num_gpu"] or 0))
                milli = int(float(row["gpu_milli"] or 0)) if num else 0
                spec = (row.get("gpu_spec") or "").strip()
                memory = int(float(row.get("memory_mib") or 0))
                pods.append(PodRequest(f"target-{reader.line_num}", int(float(row["cpu_milli"] or 0)), memory, num, milli,
                                       frozenset(s for s in spec.split("|") if s)))
            except (ValueError, InvalidInput) as exc:
                raise InvalidInput(f"{path}:{reader.line_num}: {exc}") from None
    if not pods:
        raise InvalidInput(f"{path}: no pods")
    return pods


def target_from_pods(pods: Iterable[PodRequest]) -> TargetWorkload:
    """Shapes of the pods seen (those asking for GPUs weigh as in the trace); the prior if none."""
    seen = [p for p in pods]
    if not any(p.num_gpu for p in seen):
        return FALLBACK
    return TargetWorkload.from_pods(seen)
