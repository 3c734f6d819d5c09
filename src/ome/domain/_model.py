"""Nodes and pod requests: frozen value objects in integer units.

Units: CPU in milli-cores, memory in MiB, GPU share in milli-GPU (1000 = one whole GPU),
prices in micro-USD per hour (integers keep CP-SAT objectives exact).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ._errors import InvalidInput

MILLI = 1000  # milli-GPU in one GPU
MAX_GPUS_PER_NODE = 16

SPOT = "spot"
ON_DEMAND = "on-demand"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    cpu_milli: int
    memory_mib: int
    gpu_model: str = ""  # "" for a CPU-only node
    gpu_count: int = 0
    gpu_memory_mib: int = 0  # per GPU; 0 when unknown
    pool: str = ""
    capacity_type: str = ON_DEMAND  # "spot" or "on-demand"
    zone: str = ""
    price_micro_usd_per_hour: int = 0  # whole node
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"node {self.name!r}"
        if not self.name:
            raise InvalidInput("node has an empty name")
        if self.cpu_milli < 0 or self.memory_mib < 0:
            raise InvalidInput(f"{where}: cpu_milli and memory_mib must be >= 0")
        if not 0 <= self.gpu_count <= MAX_GPUS_PER_NODE:
            raise InvalidInput(f"{where}: gpu_count {self.gpu_count} outside 0..{MAX_GPUS_PER_NODE}")
        if self.gpu_count and not self.gpu_model:
            raise InvalidInput(f"{where}: has {self.gpu_count} GPUs but no gpu_model")
        if self.capacity_type not in (SPOT, ON_DEMAND):
            raise InvalidInput(f"{where}: capacity_type must be 'spot' or 'on-demand', got {self.capacity_type!r}")

    @property
    def gpu_milli_capacity(self) -> int:
        return self.gpu_count * MILLI

    def label(self, key: str, default: str = "") -> str:
        return dict(self.labels).get(key, default)

    def with_labels(self, **changes: str) -> Node:
        merged = dict(self.labels) | changes
        return replace(self, labels=tuple(sorted(merged.items())))


@dataclass(frozen=True, slots=True)
class PodRequest:
    """What one pod asks for.

    A sharing pod has num_gpu == 1 and gpu_milli < 1000 and takes milli on one GPU.
    A whole-GPU pod has gpu_milli == 1000 and takes num_gpu free GPUs on one node.
    """

    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int = 0
    gpu_milli: int = 0  # per GPU: 1..999 shares one GPU, 1000 = whole GPUs
    gpu_models: frozenset[str] = field(default_factory=frozenset)  # empty = any model
    min_gpu_memory_mib: int = 0
    priority: int = 0
    workload: str = ""
    gang: str = ""

    def __post_init__(self) -> None:
        where = f"pod {self.name!r}"
        if self.cpu_milli < 0 or self.memory_mib < 0:
            raise InvalidInput(f"{where}: cpu_milli and memory_mib must be >= 0")
        if not 0 <= self.num_gpu <= MAX_GPUS_PER_NODE:
            raise InvalidInput(f"{where}: num_gpu {self.num_gpu} outside 0..{MAX_GPUS_PER_NODE}")
        if self.num_gpu == 0 and self.gpu_milli != 0:
            raise InvalidInput(f"{where}: gpu_milli {self.gpu_milli} given without num_gpu")
        if self.num_gpu > 0 and not 1 <= self.gpu_milli <= MILLI:
            raise InvalidInput(f"{where}: gpu_milli must be 1..1000, got {self.gpu_milli}")
        if self.num_gpu > 1 and self.gpu_milli != MILLI:
            raise InvalidInput(f"{where}: a pod with {self.num_gpu} GPUs must take whole GPUs (gpu_milli 1000)")

    @property
    def is_sharing(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < MILLI

    @property
    def gpu_demand_milli(self) -> int:
        return self.num_gpu * self.gpu_milli

    def accepts(self, node: Node) -> bool:
        """Static fit: model and GPU memory, independent of what is allocated."""
        if self.num_gpu == 0:
            return True
        if node.gpu_count < self.num_gpu:
            return False
        if self.gpu_models and node.gpu_model not in self.gpu_models:
            return False
        if self.min_gpu_memory_mib and node.gpu_memory_mib and node.gpu_memory_mib < self.min_gpu_memory_mib:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one pod sits: node index and the GPUs it holds (milli on each)."""

    pod: PodRequest
    node: int
    gpus: tuple[int, ...] = ()
