"""Aggregation: identical pods become one shape with a count, identical nodes one node type.

The trace has ~150 pod shapes and 15 GPU-node shapes, so models built over shapes stay small
whatever the number of pods.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ome.domain import Node, PodRequest


@dataclass(frozen=True, slots=True, order=True)
class PodShape:
    """Everything about a pod that matters for feasibility (names and priorities do not)."""

    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int  # per GPU
    gpu_models: tuple[str, ...] = ()  # sorted; empty = any model
    min_gpu_memory_mib: int = 0

    @property
    def demand_milli(self) -> int:
        return self.num_gpu * self.gpu_milli

    @property
    def is_multi(self) -> bool:
        """Takes two or more whole GPUs (GPU indices are then a node-level choice)."""
        return self.num_gpu > 1

    @property
    def is_single(self) -> bool:
        """Takes gpu_milli on exactly one GPU (sharing pods and one-whole-GPU pods)."""
        return self.num_gpu == 1

    def request(self) -> PodRequest:
        return PodRequest(
            "shape", self.cpu_milli, self.memory_mib, self.num_gpu, self.gpu_milli,
            frozenset(self.gpu_models), self.min_gpu_memory_mib,
        )


def shape_of(pod: PodRequest) -> PodShape:
    return PodShape(
        pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
        tuple(sorted(pod.gpu_models)), pod.min_gpu_memory_mib if pod.num_gpu else 0,
    )


@dataclass(frozen=True, slots=True)
class NodeType:
    """Identical nodes: capacities plus the indices of its members in the caller's node list."""

    cpu_milli: int
    memory_mib: int
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int
    members: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.members)

    def node(self) -> Node:
        return Node("type", self.cpu_milli, self.memory_mib, self.gpu_model, self.gpu_count, self.gpu_memory_mib)


def node_types(nodes: Sequence[Node], subset: Iterable[int] | None = None) -> list[NodeType]:
    """Group nodes (or the `subset` of indices) by capacity; ordered by the first member."""
    groups: dict[tuple[int, int, str, int, int], list[int]] = defaultdict(list)
    for i in range(len(nodes)) if subset is None else subset:
        n = nodes[i]
        groups[(n.cpu_milli, n.memory_mib, n.gpu_model, n.gpu_count, n.gpu_memory_mib)].append(i)
    return [NodeType(*key, tuple(members)) for key, members in sorted(groups.items(), key=lambda kv: kv[1][0])]


def group_pods(pods: Sequence[PodRequest], indices: Iterable[int] | None = None) -> dict[PodShape, list[int]]:
    """Shape -> indices (into `pods`) of the pods with that shape, in index order."""
    out: dict[PodShape, list[int]] = defaultdict(list)
    for i in range(len(pods)) if indices is None else indices:
        out[shape_of(pods[i])].append(i)
    return dict(out)


def fits_type(shape: PodShape, ntype: NodeType | Node) -> bool:
    """Static fit of one pod of `shape` on an empty node of this type."""
    node = ntype.node() if isinstance(ntype, NodeType) else ntype
    return (
        shape.cpu_milli <= node.cpu_milli
        and shape.memory_mib <= node.memory_mib
        and shape.request().accepts(node)
    )
