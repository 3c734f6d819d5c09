"""FGD's fragmentation measure (Weng et al., ATC'23), vectorised.

Target workload: the most frequent pod shapes (cpu, gpu_milli, num_gpu, models) with their
frequencies p_s. For one node and one shape s, the idle GPU milli that s cannot use is
fragment:
  - if s needs no GPU, cannot access the node's model, lacks CPU, or lacks GPUs:
    all idle GPU milli of the node;
  - otherwise: the idle milli on GPUs with less free than s needs per GPU.
So  F(node) = idle(node) - sum_s p_s * host_s(node) * high_s(node),
where high_s is the idle milli on GPUs with at least s.gpu_milli free.
Memory is not part of the measure (as in the paper).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ome.domain import MILLI, PodRequest

from ._arrays import ClusterArrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Shape:
    cpu_milli: int
    gpu_milli: int
    num_gpu: int
    gpu_models: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class BigShape:
    """A multi-GPU request the cluster should keep room for, with its share of GPU demand."""

    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_models: frozenset[str]
    demand_share: float
    min_gpu_memory_mib: int = 0


@dataclass(frozen=True, slots=True)
class TargetWorkload:
    shapes: tuple[Shape, ...]
    weights: tuple[float, ...]  # sum to 1
    # Averages over GPU pods, per whole GPU requested: what a free GPU needs beside it.
    cpu_per_gpu: float = 0.0
    mem_per_gpu: float = 0.0
    cpu_only_per_gpu: float = 0.0  # CPU of the CPU-only pods, per whole GPU the GPU pods request
    big_shapes: tuple[BigShape, ...] = ()

    @staticmethod
    def from_pods(pods: Iterable[PodRequest], coverage: float = 0.95) -> TargetWorkload:
        """The most frequent shapes covering `coverage` of pods, renormalised (CPU-only included)."""
        pods = list(pods)
        counts = Counter(Shape(p.cpu_milli, p.gpu_milli, p.num_gpu, p.gpu_models) for p in pods)
        if not counts:
            raise ValueError("target workload needs at least one pod")
        total = sum(counts.values())
        # Most frequent first; ties in a fixed order so the target is reproducible.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].gpu_milli, kv[0].num_gpu, kv[0].cpu_milli))
        chosen: list[tuple[Shape, int]] = []
        covered = 0
        for shape, n in ranked:
            if covered >= coverage * total:
                break
            chosen.append((shape, n))
            covered += n
        gpu_pods = [p for p in pods if p.num_gpu]
        demand = sum(p.gpu_demand_milli for p in gpu_pods) / 1000 or 1.0
        big = Counter(
            (p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_models, p.min_gpu_memory_mib) for p in gpu_pods if p.num_gpu > 1
        )
        return TargetWorkload(
            tuple(s for s, _ in chosen),
            tuple(n / covered for _, n in chosen),
            cpu_per_gpu=sum(p.cpu_milli for p in gpu_pods) / demand,
            mem_per_gpu=sum(p.memory_mib for p in gpu_pods) / demand,
            cpu_only_per_gpu=sum(p.cpu_milli for p in pods if not p.num_gpu) / demand,
            big_shapes=tuple(
                BigShape(c, m, g, models, n * g / demand, gmem) for (c, m, g, models, gmem), n in big.items()
            ),
        )


class FragModel:
    """Pre-indexed target workload for one cluster's GPU models."""

    def __init__(self, target: TargetWorkload, cluster: ClusterArrays) -> None:
        self.target = target
        gpu_shapes = [(s, w) for s, w in zip(target.shapes, target.weights) if s.num_gpu > 0]
        self.levels = np.array(sorted({s.gpu_milli for s, _ in gpu_shapes}), np.int64)  # distinct per-GPU milli
        level_of = {int(v): i for i, v in enumerate(self.levels)}
        self.shape_level = np.array([level_of[s.gpu_milli] for s, _ in gpu_shapes], np.int64)
        self.shape_cpu = np.array([s.cpu_milli for s, _ in gpu_shapes], np.int64)
        self.shape_num = np.array([s.num_gpu for s, _ in gpu_shapes], np.int64)
        self.shape_weight = np.array([w for _, w in gpu_shapes], np.float64)
        # access[s, model_id] for model ids 0..M-1; column M stands for "no GPU" (id -1).
        models = cluster.models
        access = np.zeros((len(gpu_shapes), len(models) + 1), np.bool_)
        for i, (s, _) in enumerate(gpu_shapes):
            for j, m in enumerate(models):
                access[i, j] = not s.gpu_models or m in s.gpu_models
        self.access = access

    def node_frag(self, gpu_free: IntArray, cpu_free: IntArray, model_id: IntArray) -> FloatArray:
        """F for a batch of node states: gpu_free (..., G), cpu_free (...), model_id (...)."""
        idle = gpu_free.sum(axis=-1).astype(np.float64)
        cnt, high = self._level_stats(gpu_free)
        return idle - self._hosted(cnt, high, cpu_free, model_id)

    def _level_stats(self, gpu_free: IntArray) -> tuple[IntArray, IntArray]:
        ge = gpu_free[..., None, :] >= self.levels[:, None]  # (..., U, G)
        return ge.sum(axis=-1), (gpu_free[..., None, :] * ge).sum(axis=-1)

    def _hosted(self, cnt: IntArray, high: IntArray, cpu_free: IntArray, model_id: IntArray) -> FloatArray:
        """sum_s p_s * host_s * high_s given per-level counts/sums (..., U)."""
        c = cnt[..., self.shape_level]  # (..., S)
        h = high[..., self.shape_level]
        host = (c >= self.shape_num) & (cpu_free[..., None] >= self.shape_cpu)
        host &= np.moveaxis(self.access[:, model_id], 0, -1)
        return (host * h * self.shape_weight).sum(axis=-1)

    def share_frag_after(
        self, gpu_free: IntArray, cpu_free: IntArray, model_id: IntArray, milli: int, cpu: int
    ) -> FloatArray:
        """F after placing a sharing pod (milli on GPU g, cpu) for every node row and GPU g: (N, G).

        Uses per-level deltas: only GPU g changes, so counts and sums move by at most one GPU.
        Entries where GPU g has less than `milli` free are +inf.
        """
        out = np.full(gpu_free.shape, np.inf)
        rows, cols = np.nonzero(gpu_free >= milli)
        if rows.size == 0:
            return out
        # GPUs of one node with the same free milli give the same result: evaluate each once.
        key = rows * (2 * MILLI + 1) + gpu_free[rows, cols]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        r, c_ = rows[first], cols[first]
        idle = gpu_free[r].sum(axis=-1).astype(np.float64)  # (P,)
        cnt, high = self._level_stats(gpu_free[r])  # (P, U)
        f = gpu_free[r, c_]  # (P,)
        f2 = f - milli
        was = f[:, None] >= self.levels  # (P, U)
        now = f2[:, None] >= self.levels
        cnt2 = cnt - was + now
        high2 = high - was * f[:, None] + now * f2[:, None]
        hosted = self._hosted(cnt2, high2, cpu_free[r] - cpu, model_id[r])  # (P,)
        out[rows, cols] = ((idle - milli) - hosted)[inverse.reshape(-1)]
        return out


def take_whole_gpus(gpu_free: IntArray, count: int) -> IntArray:
    """Row-wise copy with the first `count` fully free GPUs taken (FGD's exclusive choice)."""
    out = gpu_free.copy()
    full = out >= 1000
    order = np.cumsum(full, axis=-1)
    out[full & (order <= count)] = 0
    return out
