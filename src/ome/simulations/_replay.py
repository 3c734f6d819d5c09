"""The FGD protocol replay: inflate, shuffle, place one pod at a time, never evict.

Pods are resampled (uniformly, with replacement) from the trace until the requested GPUs
reach `inflation` x cluster capacity, then shuffled with the same seed. After every pod
we know the arrived GPU demand and the allocated GPUs; at each reported arrived level the
unallocated GPU % and FGD's fragmentation ratio are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ome.domain import PodRequest
from ome.solver import Bind, ClusterArrays, FragModel, Policy, TargetWorkload, place_one

LEVELS = (90, 95, 100, 105, 110, 120, 130)
CURVE_LEVELS = tuple(range(0, 131))


@dataclass(slots=True)
class ReplayResult:
    policy: str
    seed: int
    unallocated_pct: dict[int, float] = field(default_factory=dict)
    frag_ratio_pct: dict[int, float] = field(default_factory=dict)
    curve: dict[int, float] = field(default_factory=dict)  # arrived % -> unallocated %
    placed: int = 0
    failed: int = 0
    allocated_pct_final: float = 0.0
    seconds: float = 0.0
    placements: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # pod, node, gpus
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def pods_per_second(self) -> float:
        return (self.placed + self.failed) / self.seconds if self.seconds > 0 else 0.0


def record_levels(result: ReplayResult, arrived: int, capacity: int, unalloc: float, curve: list[int], levels: list[int]) -> None:
    """Record `unalloc` at every curve point and reported level that `arrived` milli has just
    reached (both lists are consumed from the front)."""
    while curve and arrived * 100 >= curve[0] * capacity:
        result.curve[curve.pop(0)] = unalloc
    while levels and arrived * 100 >= levels[0] * capacity:
        result.unallocated_pct[levels.pop(0)] = unalloc


def arrival_sequence(pods: Sequence[PodRequest], capacity_milli: int, inflation: float, seed: int) -> list[PodRequest]:
    """The trace's pods plus uniform resamples until demand >= inflation x capacity; shuffled."""
    rng = np.random.default_rng(seed)
    out = list(pods)
    demand = sum(p.gpu_demand_milli for p in out)
    target = inflation * capacity_milli
    k = 0
    while demand < target:
        p = pods[int(rng.integers(len(pods)))]
        out.append(replace(p, name=f"{p.name}-r{k}"))
        demand += p.gpu_demand_milli
        k += 1
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def frag_ratio_pct(cluster: ClusterArrays, frag: FragModel) -> float:
    idle = float(cluster.gpu_free.sum())
    if idle <= 0:
        return 0.0
    total = float(frag.node_frag(cluster.gpu_free, cluster.cpu_free, cluster.model_id).sum())
    return 100.0 * total / idle


def replay(
    cluster: ClusterArrays,
    sequence: Sequence[PodRequest],
    policy: Policy,
    *,
    seed: int,
    target: TargetWorkload,
    keep_placements: bool = False,
    tie_break: str = "first",
) -> ReplayResult:
    """Place `sequence` one pod at a time on `cluster` (mutated) with `policy`."""
    result = ReplayResult(policy.name, seed)
    rng = np.random.default_rng(seed)
    frag = FragModel(target, cluster)
    capacity = cluster.gpu_capacity_milli
    allocated = cluster.allocated_gpu_milli()
    arrived = 0
    levels = list(LEVELS)
    curve = list(CURVE_LEVELS)
    started = time.perf_counter()
    for pod in sequence:
        arrived += pod.gpu_demand_milli
        decision = place_one(cluster, pod, policy, rng, tie_break=tie_break)
        if isinstance(decision, Bind):
            cluster.allocate(pod, decision.node, decision.gpus)
            policy.observe(cluster, pod, decision.node, decision.gpus)
            allocated += pod.gpu_demand_milli
            result.placed += 1
            if keep_placements:
                result.placements.append((pod.name, cluster.names[decision.node], decision.gpus))
        else:
            result.failed += 1
        unalloc = 100.0 - 100.0 * allocated / capacity
        while curve and arrived * 100 >= curve[0] * capacity:
            result.curve[curve.pop(0)] = unalloc
        while levels and arrived * 100 >= levels[0] * capacity:
            level = levels.pop(0)
            result.unallocated_pct[level] = unalloc
            result.frag_ratio_pct[level] = frag_ratio_pct(cluster, frag)
    result.seconds = time.perf_counter() - started
    result.allocated_pct_final = 100.0 * allocated / capacity
    return result
