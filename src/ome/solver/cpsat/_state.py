"""A mutable placement of indexed pods on nodes, mirrored in ClusterArrays (which checks every move)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from ome.domain import Assignment, ClusterState, InvariantViolation, Node, PodRequest

from .._arrays import ClusterArrays
from ._shapes import PodShape, shape_of

Placement = tuple[int, tuple[int, ...]]


class PackingState:
    """pods[i] placed at placement[i] or unplaced; arrays and per-node index kept in step."""

    def __init__(self, nodes: Sequence[Node], pods: Sequence[PodRequest]) -> None:
        self.nodes, self.pods = nodes, pods
        self.shapes: list[PodShape] = [shape_of(p) for p in pods]
        self.arrays = ClusterArrays(nodes)
        self.placement: dict[int, Placement] = {}
        self.on_node: dict[int, set[int]] = defaultdict(set)
        self.milli = 0

    def place(self, p: int, where: Placement) -> None:
        node, gpus = where
        self.arrays.allocate(self.pods[p], node, gpus)
        self.placement[p] = (node, tuple(gpus))
        self.on_node[node].add(p)
        self.milli += self.pods[p].gpu_demand_milli

    def remove(self, p: int) -> None:
        node, gpus = self.placement.pop(p)
        self.arrays.release(Assignment(self.pods[p], node, gpus))
        self.on_node[node].discard(p)
        self.milli -= self.pods[p].gpu_demand_milli

    def replace_window(self, window: Iterable[int], new: Mapping[int, Placement]) -> None:
        """Make the window's nodes hold exactly `new` (pods from elsewhere must be unplaced)."""
        for i in window:
            for p in list(self.on_node.get(i, ())):
                self.remove(p)
        for p, where in sorted(new.items(), key=lambda kv: (-self.pods[kv[0]].num_gpu, kv[0])):
            if p in self.placement:
                raise InvariantViolation(f"pod {self.pods[p].name} is placed twice")
            self.place(p, where)

    def window_contents(self, window: Iterable[int]) -> dict[int, Placement]:
        return {p: self.placement[p] for i in window for p in self.on_node.get(i, ())}

    def assignments(self) -> list[Assignment]:
        return [Assignment(self.pods[p], node, gpus) for p, (node, gpus) in sorted(self.placement.items())]

    def free_milli(self) -> list[int]:
        return [int(x) for x in self.arrays.gpu_free.sum(axis=1)]


def verify(nodes: Sequence[Node], assignments: Iterable[Assignment]) -> int:
    """Replay `assignments` into the exact reference allocator; returns GPU milli allocated.

    Raises InvariantViolation if any of them breaks a rule (CPU, memory, GPU, model).
    """
    state = ClusterState(nodes)
    for a in assignments:
        state.allocate(a.pod, a.node, a.gpus)
    return state.allocated_gpu_milli()
