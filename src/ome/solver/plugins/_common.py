"""GPU-index choices shared by several policies."""

from __future__ import annotations

import numpy as np

from ome.domain import MILLI, PodRequest

from .._arrays import ClusterArrays

# Normalisers of the FGD simulator's BestFit and DotProd scores (largest node spec).
MAX_SPEC_CPU = 128_000
MAX_SPEC_GPU = 8 * MILLI


def first_free_gpus(cluster: ClusterArrays, node: int, count: int) -> tuple[int, ...]:
    """The first `count` fully free GPUs by index (whole-GPU pods)."""
    free = np.flatnonzero(cluster.gpu_free[node] >= MILLI)
    return tuple(int(g) for g in free[:count])


def tightest_gpus(cluster: ClusterArrays, pod: PodRequest, node: int) -> tuple[int, ...]:
    """Sharing pods: the GPU with the least free milli that still fits; whole GPUs: first free."""
    if pod.num_gpu == 0:
        return ()
    if not pod.is_sharing:
        return first_free_gpus(cluster, node, pod.num_gpu)
    row = cluster.gpu_free[node]
    fits = np.flatnonzero(row >= pod.gpu_milli)
    return (int(fits[np.argmin(row[fits])]),)
