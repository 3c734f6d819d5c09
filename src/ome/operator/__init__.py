"""The OME placement operator: ModelPlacement and PlacementPolicy -> planned, gated, steered pods.

kopf front end over a pure core: `reconcile(snapshot) -> Plan` decides, `apply_plan` writes
through a `KubeClient`, `PlannerLoop` runs cycles. See docs/operator.md.
"""

from ._kube import Connection, FakeKube, KubeClient, KubeError, RealKube
from ._loop import CycleReport, Expectation, PlannerLoop, SnapshotSource, apply_plan
from ._metrics import Metrics
from ._model import Snapshot
from ._reconcile import Plan, reconcile
from ._settings import (
    ClusterSettings,
    LoopSettings,
    MetricsSettings,
    OperatorSettings,
    SchedulingSettings,
)

__all__ = [
    "ClusterSettings",
    "Connection",
    "CycleReport",
    "Expectation",
    "FakeKube",
    "KubeClient",
    "KubeError",
    "LoopSettings",
    "Metrics",
    "MetricsSettings",
    "OperatorSettings",
    "Plan",
    "PlannerLoop",
    "RealKube",
    "SchedulingSettings",
    "Snapshot",
    "SnapshotSource",
    "apply_plan",
    "reconcile",
]
