"""The FGD paper's baseline policies and kube-scheduler's stock fit strategies.

Each scorer returns ints in 0..100, higher is better, computed for all feasible nodes at once.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ome.domain import MILLI, PodRequest

from .._arrays import ClusterArrays
from .._framework import IntArray
from ._common import MAX_SPEC_CPU, MAX_SPEC_GPU, tightest_gpus


class _Stateless:
    name = ""

    def choose_gpus(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
        return tightest_gpus(cluster, pod, node)

    def observe(self, cluster: ClusterArrays, pod: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        return None


class RandomPolicy(_Stateless):
    """A feasible node chosen uniformly at random (every node scores the same); GPUs at random."""

    name = "random"
    tie_break = "random"  # the choice itself: never the framework's node-order rule

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        return np.zeros(nodes.size, np.int64)

    def choose_gpus(self, cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
        usable = np.flatnonzero(cluster.gpu_free[node] >= pod.gpu_milli) if pod.num_gpu else np.empty(0, np.int64)
        picked = self._rng.choice(usable, size=pod.num_gpu, replace=False) if pod.num_gpu else usable
        return tuple(sorted(int(g) for g in picked))


class BestFitPolicy(_Stateless):
    """Least leftover after placement: 100 * (1 - (0.5*cpu_left/MaxCPU + 0.5*gpu_left/MaxGPU)).

    Then min-max normalised over the feasible nodes, as the FGD simulator's NormalizeScore does.
    """

    name = "bestfit"

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        cpu_left = cluster.cpu_free[nodes] - pod.cpu_milli
        gpu_left = cluster.gpu_free[nodes].sum(axis=1) - pod.gpu_demand_milli
        raw = ((1.0 - (0.5 * cpu_left / MAX_SPEC_CPU + 0.5 * gpu_left / MAX_SPEC_GPU)) * 100).astype(np.int64)
        return _min_max(np.clip(raw, 0, 100))


class DotProductPolicy(_Stateless):
    """Tetris-style alignment of free resources and request (normalised by max spec), lower dot wins."""

    name = "dotprod"

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        cpu = cluster.cpu_free[nodes] / MAX_SPEC_CPU * (pod.cpu_milli / MAX_SPEC_CPU)
        gpu = cluster.gpu_free[nodes].sum(axis=1) / MAX_SPEC_GPU * (pod.gpu_demand_milli / MAX_SPEC_GPU)
        return np.clip(((1.0 - (cpu + gpu) / 2.0) * 100).astype(np.int64), 0, 100)


class GpuPackingPolicy(_Stateless):
    """Prefer (1) sharing an in-use GPU, (2) free GPUs on a used node, (3) an idle node.

    Ranges: case 1 in [50, 100] (100 - free% of the used GPU / 10), case 2 in [33, 50]
    (50 - fully free GPUs used), case 3 in [0, 33] (33 - free GPUs).
    """

    name = "gpu-packing"

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        free = cluster.gpu_free[nodes]
        count = cluster.gpu_count[nodes]
        full = (free >= MILLI).sum(axis=1)
        idle_node = full == count
        if pod.num_gpu == 0:
            return np.zeros(nodes.size, np.int64)
        if not pod.is_sharing:
            used_full = np.full(nodes.size, pod.num_gpu)
            partial_score = np.zeros(nodes.size, np.int64)
        else:
            fits = np.where(free >= pod.gpu_milli, free, MILLI + 1)
            tight = fits.min(axis=1)
            used_full = (tight >= MILLI).astype(np.int64)
            partial_score = np.maximum(100 - (tight * 100 // MILLI) // 10, 50)
        case3 = np.maximum(33 - full, full)
        case2 = np.maximum(50 - used_full, 33)
        return np.where(idle_node, case3, np.where(used_full > 0, case2, partial_score)).astype(np.int64)


class GpuClusteringPolicy(_Stateless):
    """Keep pods with the same GPU request together (affinity = the per-GPU request).

    (75, 100]: node holds only this request type; (50, 75]: holds it among others;
    (25, 50]: idle node; (0, 25]: only other types. Within a band, fuller nodes score higher.
    """

    name = "gpu-clustering"

    def __init__(self) -> None:
        self._tags: dict[int, defaultdict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        if pod.num_gpu == 0:
            return np.zeros(nodes.size, np.int64)
        tag = (pod.num_gpu, pod.gpu_milli)
        used = 25 * (MAX_SPEC_GPU - cluster.gpu_free[nodes].sum(axis=1)) // MAX_SPEC_GPU
        base = np.empty(nodes.size, np.int64)
        for i, n in enumerate(nodes.tolist()):
            tags = self._tags.get(n)
            if not tags:
                base[i] = 25
            elif tags.get(tag, 0) > 0:
                base[i] = 75 if len(tags) == 1 else 50
            else:
                base[i] = 0
        return (base + used).astype(np.int64)

    def observe(self, cluster: ClusterArrays, pod: PodRequest, node: int, gpus: tuple[int, ...]) -> None:
        if pod.num_gpu:
            self._tags[node][(pod.num_gpu, pod.gpu_milli)] += 1


class _FitStrategy(_Stateless):
    """kube-scheduler NodeResourcesFit over cpu, memory and GPU milli, equal weights."""

    most = False

    def score(self, cluster: ClusterArrays, pod: PodRequest, nodes: IntArray) -> IntArray:
        parts = []
        for cap, free, req in (
            (cluster.cpu_cap[nodes], cluster.cpu_free[nodes], pod.cpu_milli),
            (cluster.mem_cap[nodes], cluster.mem_free[nodes], pod.memory_mib),
            (cluster.gpu_cap[nodes].sum(axis=1), cluster.gpu_free[nodes].sum(axis=1), pod.gpu_demand_milli),
        ):
            safe = np.maximum(cap, 1)  # zero-capacity guard: such a resource scores 0
            used = (cap - free + req) * 100 // safe
            parts.append(np.where(cap > 0, used if self.most else 100 - used, 0))
        return np.clip(sum(parts) // 3, 0, 100).astype(np.int64)


class LeastAllocatedPolicy(_FitStrategy):
    name = "least-allocated"


class MostAllocatedPolicy(_FitStrategy):
    name = "most-allocated"
    most = True


def _min_max(scores: IntArray) -> IntArray:
    if scores.size == 0:
        return scores
    lo, hi = int(scores.min()), int(scores.max())
    if hi == lo:
        return np.full(scores.size, 100, np.int64)
    return ((scores - lo) * 100 // (hi - lo)).astype(np.int64)
