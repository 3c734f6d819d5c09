"""The exact, mutable cluster allocation: the reference every fast path is checked against."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._errors import InvariantViolation
from ._model import MILLI, Assignment, Node, PodRequest
from ._status import SUCCESS, Status


class ClusterState:
    """Free CPU, memory and per-GPU milli of every node; allocate/release are exact inverses."""

    __slots__ = ("nodes", "cpu_free", "mem_free", "gpu_free", "_index")

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self._index = {n.name: i for i, n in enumerate(self.nodes)}
        if len(self._index) != len(self.nodes):
            raise InvariantViolation("duplicate node names")
        self.cpu_free = [n.cpu_milli for n in self.nodes]
        self.mem_free = [n.memory_mib for n in self.nodes]
        self.gpu_free = [[MILLI] * n.gpu_count for n in self.nodes]

    def index_of(self, name: str) -> int:
        return self._index[name]

    def copy(self) -> ClusterState:
        other = ClusterState.__new__(ClusterState)
        other.nodes, other._index = self.nodes, self._index
        other.cpu_free = list(self.cpu_free)
        other.mem_free = list(self.mem_free)
        other.gpu_free = [list(g) for g in self.gpu_free]
        return other

    def check(self, pod: PodRequest, node: int) -> Status:
        n = self.nodes[node]
        if not pod.accepts(n):
            return Status.unresolvable(f"node {n.name} ({n.gpu_model or 'no GPU'} x{n.gpu_count}) cannot serve this pod")
        if pod.cpu_milli > n.cpu_milli or pod.memory_mib > n.memory_mib:
            return Status.unresolvable(f"node {n.name} is smaller than the pod's CPU/memory request")
        if self.cpu_free[node] < pod.cpu_milli:
            return Status.unschedulable(f"node {n.name}: insufficient cpu")
        if self.mem_free[node] < pod.memory_mib:
            return Status.unschedulable(f"node {n.name}: insufficient memory")
        if pod.num_gpu and len(self.usable_gpus(pod, node)) < pod.num_gpu:
            return Status.unschedulable(f"node {n.name}: not enough free GPU")
        return SUCCESS

    def usable_gpus(self, pod: PodRequest, node: int) -> list[int]:
        """GPU indices on which one unit of this pod's GPU request fits."""
        return [g for g, free in enumerate(self.gpu_free[node]) if free >= pod.gpu_milli]

    def allocate(self, pod: PodRequest, node: int, gpus: Iterable[int]) -> Assignment:
        gpus = tuple(gpus)
        status = self.check(pod, node)
        if not status.ok:
            raise InvariantViolation(f"cannot place {pod.name}: {'; '.join(status.reasons)}")
        if len(gpus) != pod.num_gpu or len(set(gpus)) != len(gpus):
            raise InvariantViolation(f"{pod.name} needs {pod.num_gpu} distinct GPUs, got {gpus}")
        free = self.gpu_free[node]
        for g in gpus:
            if not 0 <= g < len(free) or free[g] < pod.gpu_milli:
                raise InvariantViolation(f"{pod.name}: GPU {g} on {self.nodes[node].name} lacks {pod.gpu_milli} milli")
        self.cpu_free[node] -= pod.cpu_milli
        self.mem_free[node] -= pod.memory_mib
        for g in gpus:
            free[g] -= pod.gpu_milli
        return Assignment(pod, node, gpus)

    def release(self, a: Assignment) -> None:
        n = self.nodes[a.node]
        free = self.gpu_free[a.node]
        if self.cpu_free[a.node] + a.pod.cpu_milli > n.cpu_milli or self.mem_free[a.node] + a.pod.memory_mib > n.memory_mib:
            raise InvariantViolation(f"release of {a.pod.name} would exceed {n.name}'s capacity")
        if any(free[g] + a.pod.gpu_milli > MILLI for g in a.gpus):
            raise InvariantViolation(f"release of {a.pod.name} would exceed a GPU on {n.name}")
        self.cpu_free[a.node] += a.pod.cpu_milli
        self.mem_free[a.node] += a.pod.memory_mib
        for g in a.gpus:
            free[g] += a.pod.gpu_milli

    def allocated_gpu_milli(self) -> int:
        return sum(n.gpu_count * MILLI - sum(f) for n, f in zip(self.nodes, self.gpu_free))

    def capacity_gpu_milli(self) -> int:
        return sum(n.gpu_count for n in self.nodes) * MILLI
