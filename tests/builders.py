"""Fluent builders for nodes and pods, with defaults that fit anywhere unless told otherwise."""

from __future__ import annotations

from dataclasses import replace

from ome.domain import MILLI, Node, PodRequest


class NodeBuilder:
    def __init__(self, name: str = "n0") -> None:
        self._node = Node(name=name, cpu_milli=64_000, memory_mib=262_144)

    def gpus(self, model: str, count: int, memory_mib: int = 0) -> NodeBuilder:
        self._node = replace(self._node, gpu_model=model, gpu_count=count, gpu_memory_mib=memory_mib)
        return self

    def cpu(self, milli: int) -> NodeBuilder:
        self._node = replace(self._node, cpu_milli=milli)
        return self

    def memory(self, mib: int) -> NodeBuilder:
        self._node = replace(self._node, memory_mib=mib)
        return self

    def obj(self) -> Node:
        return self._node


def make_node(name: str = "n0") -> NodeBuilder:
    return NodeBuilder(name)


def make_pod(
    name: str = "p0", cpu: int = 1_000, mem: int = 1_024, gpus: int = 0, milli: int | None = None, models: tuple[str, ...] = ()
) -> PodRequest:
    per_gpu = milli if milli is not None else (MILLI if gpus else 0)
    return PodRequest(name, cpu, mem, gpus, per_gpu if gpus else 0, frozenset(models))
