"""A placement plan as slots: how many pods of each kind each node is meant to hold.

`ome.solver.cpsat.plan_slots` computes one by packing the expected workload at once; the
`ome` policy given a plan sends each pod to a node with a free slot of its kind first. The
plan is keyed by node name, so it survives a reordered or grown node list (nodes it does not
name simply have no slots).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ome.domain import PodRequest

from .._arrays import ClusterArrays
from .._framework import IntArray

PodKind = tuple[int, int, int, int, frozenset[str], int]  # cpu, memory, GPUs, milli per GPU, models, GPU memory


def pod_kind(pod: PodRequest) -> PodKind:
    """What makes two pods interchangeable for packing (names, priorities and labels do not)."""
    return (pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli, pod.gpu_models, pod.min_gpu_memory_mib)


@dataclass(frozen=True)
class SlotPlan:
    """slots[node name][kind] = pods of that kind the node is meant to hold."""

    slots: Mapping[str, Mapping[PodKind, int]]
    level: float = 1.0  # the expected workload packed, as a multiple of the cluster's GPUs
    planned_pct: float = 0.0  # GPU allocation of the plan itself, % of capacity
    adopted: bool = True  # False: it failed its check against `ome` alone, which then places without it
    stats: Mapping[str, float] = field(default_factory=dict)

    def count(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.slots.values())


class SlotBook:
    """A plan against one cluster: per kind, the slots per node row and how many are taken."""

    def __init__(self, plan: SlotPlan, cluster: ClusterArrays) -> None:
        self.cluster = cluster
        self._planned: dict[PodKind, IntArray] = {}
        for name, kinds in plan.slots.items():
            row = cluster.index.get(name)
            if row is None:
                continue
            for kind, n in kinds.items():
                self._planned.setdefault(kind, np.zeros(len(cluster), np.int64))[row] += n
        self._taken = {kind: np.zeros(len(cluster), np.int64) for kind in self._planned}

    def free(self, pod: PodRequest, nodes: IntArray) -> np.ndarray:
        """Whether each of `nodes` still has a slot of the pod's kind."""
        kind = pod_kind(pod)
        planned = self._planned.get(kind)
        if planned is None:
            return np.zeros(nodes.size, np.bool_)
        return planned[nodes] > self._taken[kind][nodes]

    def take(self, pod: PodRequest, node: int) -> None:
        """A pod of this kind now runs on `node` (counted even beyond the node's slots)."""
        taken = self._taken.get(pod_kind(pod))
        if taken is not None:
            taken[node] += 1

    def give_back(self, pod: PodRequest, node: int) -> None:
        taken = self._taken.get(pod_kind(pod))
        if taken is not None and taken[node] > 0:
            taken[node] -= 1

