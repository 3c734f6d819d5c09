"""Operator settings: grouped, frozen, built once at the edge (the CLI) and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ome.domain import InvalidInput

from . import _names as n


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    kubeconfig: Path | None = None
    """Admin or operator kubeconfig. None: in-cluster service account, else $KUBECONFIG."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose ModelPlacements, pods and PDBs are watched. Empty: the whole cluster.
    Nodes and other cluster-scoped kinds are always watched whole."""
    node_selector: tuple[tuple[str, str], ...] = ()
    """Only nodes with all these labels are planned onto (e.g. a dedicated GPU pool). Empty: all."""


@dataclass(frozen=True, slots=True)
class SchedulingSettings:
    scheduler_name: str = n.SCHEDULER_NAME
    """spec.schedulerName of governed pods. `ome-scheduler` (kube-scheduler with the OME extender);
    tests without the extender use `default-scheduler`: the plan's node affinity pins the node."""


@dataclass(frozen=True, slots=True)
class LoopSettings:
    debounce_s: float = 0.2
    """Wait this long after a change before planning, so a burst of events makes one cycle."""
    resync_s: float = 15.0
    """Plan at least this often even without events (retries of failed writes, clock-driven states)."""
    expectation_timeout_s: float = 10.0
    """How long to wait for the watches to show the operator's own writes before planning anyway.
    Planning on a view without them could book the same GPUs twice."""
    write_workers: int = 8
    """Concurrent API writes per stage of a cycle."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    host: str = "127.0.0.1"
    """Bind address of /metrics. Loopback by default; a Deployment sets 0.0.0.0 explicitly."""
    port: int | None = 8080
    """Port of /metrics; None: no metrics server. 0: any free port."""


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    scheduling: SchedulingSettings = field(default_factory=SchedulingSettings)
    loop: LoopSettings = field(default_factory=LoopSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def parse_selector(text: str) -> tuple[tuple[str, str], ...]:
    """`k=v,k2=v2` -> ((k, v), (k2, v2)); equality selectors only."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InvalidInput(f"node selector {text!r}: expected key=value[,key=value], got {part!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(sorted(pairs))
