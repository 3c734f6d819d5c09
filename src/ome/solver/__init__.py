"""The pure placement core: numpy cluster arrays, the online framework and its policies.

Batch optimisation (CP-SAT) lives in ome.solver.cpsat and is imported explicitly.
"""

from ._arrays import ClusterArrays
from ._fragmentation import FragModel, Shape, TargetWorkload
from ._framework import MAX_SCORE, TIE_BREAKS, Bind, Decision, Infeasible, Policy, explain_infeasible, place_one
from ._planning import (
    CapacityRule,
    MemberPlacement,
    PlanContext,
    PoolPrice,
    ReplicaPlan,
    ReplicaRequest,
    Tier,
    Weights,
    apply_plan,
    capacity_rule,
    explain_replica,
    gpu_hour_prices,
    plan_replica,
    plan_replicas,
)
from ._preemption import Preemption, VictimUnit, select_reclaim, select_victims
from ._refill import Refill, refill_gpus
from .plugins import NEEDS_TARGET, OmePolicy, make_policy, policy_names, register
from .plugins._slots import PodKind, SlotBook, SlotPlan, pod_kind

__all__ = [
    "MAX_SCORE",
    "NEEDS_TARGET",
    "TIE_BREAKS",
    "Bind",
    "CapacityRule",
    "ClusterArrays",
    "Decision",
    "FragModel",
    "Infeasible",
    "MemberPlacement",
    "OmePolicy",
    "PlanContext",
    "PodKind",
    "Policy",
    "PoolPrice",
    "Preemption",
    "Refill",
    "ReplicaPlan",
    "ReplicaRequest",
    "Shape",
    "SlotBook",
    "SlotPlan",
    "TargetWorkload",
    "Tier",
    "VictimUnit",
    "Weights",
    "apply_plan",
    "capacity_rule",
    "explain_infeasible",
    "explain_replica",
    "gpu_hour_prices",
    "make_policy",
    "place_one",
    "pod_kind",
    "plan_replica",
    "plan_replicas",
    "policy_names",
    "refill_gpus",
    "register",
    "select_reclaim",
    "select_victims",
]
