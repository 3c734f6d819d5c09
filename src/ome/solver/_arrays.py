"""ClusterArrays: the allocation state as numpy arrays, for vectorised filtering and scoring.

It mirrors ome.domain.ClusterState (the exact reference) with the same rules; tests replay
every decision through ClusterState to prove the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ome.domain import MILLI, Assignment, InvariantViolation, Node, PodRequest

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class ClusterArrays:
    """Free CPU, memory and per-GPU milli for N nodes; GPU slots a node lacks hold 0.

    Change the free arrays through allocate/release only: they stamp the rows they change, and
    scorers that keep per-node sums between decisions (ome) refresh just those rows."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        self.names = [n.name for n in self.nodes]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.models: list[str] = sorted({n.gpu_model for n in self.nodes if n.gpu_count})
        model_ids = {m: i for i, m in enumerate(self.models)}
        self.model_id = np.array([model_ids.get(n.gpu_model, -1) if n.gpu_count else -1 for n in self.nodes], np.int64)
        self.gpu_count = np.array([n.gpu_count for n in self.nodes], np.int64)
        self.gpu_memory = np.array([n.gpu_memory_mib for n in self.nodes], np.int64)
        self.cpu_cap = np.array([n.cpu_milli for n in self.nodes], np.int64)
        self.mem_cap = np.array([n.memory_mib for n in self.nodes], np.int64)
        width = max(1, int(self.gpu_count.max(initial=0)))
        self.gpu_cap = np.where(np.arange(width)[None, :] < self.gpu_count[:, None], MILLI, 0).astype(np.int64)
        self.cpu_free = self.cpu_cap.copy()
        self.mem_free = self.mem_cap.copy()
        self.gpu_free = self.gpu_cap.copy()
        # clock counts allocate/release calls; stamp[i] is the clock of row i's last change, so a
        # scorer that keeps per-node sums finds the rows changed since it looked in O(N) compares.
        self.clock = 0
        self.stamp = np.zeros(len(self.nodes), np.int64)
        self._model_masks: dict[tuple[frozenset[str], int], BoolArray] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def copy(self) -> ClusterArrays:
        other = ClusterArrays.__new__(ClusterArrays)
        other.__dict__.update(self.__dict__)
        other.cpu_free = self.cpu_free.copy()
        other.mem_free = self.mem_free.copy()
        other.gpu_free = self.gpu_free.copy()
        other.stamp = self.stamp.copy()
        return other

    # --- static fit ---------------------------------------------------------------------
    def accepts_mask(self, pod: PodRequest) -> BoolArray:
        """Nodes whose GPU model, GPU count, GPU memory and capacity can ever hold the pod."""
        if not pod.num_gpu:  # models and GPU memory only bind pods that use a GPU
            return (self.cpu_cap >= pod.cpu_milli) & (self.mem_cap >= pod.memory_mib)
        key = (pod.gpu_models, pod.min_gpu_memory_mib)
        mask = self._model_masks.get(key)
        if mask is None:
            mask = self.model_id >= 0
            if pod.gpu_models:
                wanted = [i for i, m in enumerate(self.models) if m in pod.gpu_models]
                mask &= np.isin(self.model_id, wanted)
            if pod.min_gpu_memory_mib:
                mask &= (self.gpu_memory == 0) | (self.gpu_memory >= pod.min_gpu_memory_mib)
            self._model_masks[key] = mask
        return mask & (self.cpu_cap >= pod.cpu_milli) & (self.mem_cap >= pod.memory_mib) & (self.gpu_count >= pod.num_gpu)

    # --- dynamic fit --------------------------------------------------------------------
    def fits_mask(self, pod: PodRequest) -> BoolArray:
        """Nodes where the pod fits now (CPU, memory, GPUs, model)."""
        ok = self.accepts_mask(pod) & (self.cpu_free >= pod.cpu_milli) & (self.mem_free >= pod.memory_mib)
        if pod.num_gpu:
            ok &= (self.gpu_free >= pod.gpu_milli).sum(axis=1) >= pod.num_gpu
        return ok

    def usable_gpus(self, pod: PodRequest, node: int) -> list[int]:
        return [int(g) for g in np.flatnonzero(self.gpu_free[node] >= pod.gpu_milli)]

    def allocate(self, pod: PodRequest, node: int, gpus: Sequence[int]) -> Assignment:
        gpus = tuple(int(g) for g in gpus)
        if not self.fits_mask_one(pod, node):
            raise InvariantViolation(f"{pod.name} does not fit on {self.names[node]}")
        if len(gpus) != pod.num_gpu or len(set(gpus)) != len(gpus):
            raise InvariantViolation(f"{pod.name} needs {pod.num_gpu} distinct GPUs, got {gpus}")
        row = self.gpu_free[node]
        for g in gpus:
            if row[g] < pod.gpu_milli:
                raise InvariantViolation(f"{pod.name}: GPU {g} on {self.names[node]} lacks {pod.gpu_milli} milli")
        self.cpu_free[node] -= pod.cpu_milli
        self.mem_free[node] -= pod.memory_mib
        for g in gpus:
            row[g] -= pod.gpu_milli
        self._touch(node)
        return Assignment(pod, node, gpus)

    def release(self, a: Assignment) -> None:
        row = self.gpu_free[a.node]
        if any(row[g] + a.pod.gpu_milli > self.gpu_cap[a.node, g] for g in a.gpus) or (
            self.cpu_free[a.node] + a.pod.cpu_milli > self.cpu_cap[a.node]
            or self.mem_free[a.node] + a.pod.memory_mib > self.mem_cap[a.node]
        ):
            raise InvariantViolation(f"release of {a.pod.name} would exceed {self.names[a.node]}'s capacity")
        self.cpu_free[a.node] += a.pod.cpu_milli
        self.mem_free[a.node] += a.pod.memory_mib
        for g in a.gpus:
            row[g] += a.pod.gpu_milli
        self._touch(a.node)

    def _touch(self, node: int) -> None:
        self.clock += 1
        self.stamp[node] = self.clock

    def changed_since(self, clock: int) -> IntArray:
        """Rows allocated on or released from after `clock` (a value of self.clock)."""
        if clock == self.clock:
            return np.empty(0, np.int64)
        return np.flatnonzero(self.stamp > clock)

    def fits_mask_one(self, pod: PodRequest, node: int) -> bool:
        n = self.nodes[node]
        if not pod.accepts(n) or self.cpu_free[node] < pod.cpu_milli or self.mem_free[node] < pod.memory_mib:
            return False
        return not pod.num_gpu or int((self.gpu_free[node] >= pod.gpu_milli).sum()) >= pod.num_gpu

    # --- summaries ----------------------------------------------------------------------
    @property
    def gpu_capacity_milli(self) -> int:
        return int(self.gpu_count.sum()) * MILLI

    def allocated_gpu_milli(self) -> int:
        return int(self.gpu_cap.sum() - self.gpu_free.sum())
