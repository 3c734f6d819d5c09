"""The pure placement core: numpy cluster arrays, the online framework and its policies.

Batch optimisation (CP-SAT) lives in ome.solver.cpsat and is imported explicitly.
"""

from ._arrays import ClusterArrays
from ._fragmentation import FragModel, Shape, TargetWorkload
from ._framework import MAX_SCORE, Bind, Decision, Infeasible, Policy, explain_infeasible, place_one
from .plugins import NEEDS_TARGET, make_policy, policy_names, register

__all__ = [
    "MAX_SCORE",
    "NEEDS_TARGET",
    "Bind",
    "ClusterArrays",
    "Decision",
    "FragModel",
    "Infeasible",
    "Policy",
    "Shape",
    "TargetWorkload",
    "explain_infeasible",
    "make_policy",
    "place_one",
    "policy_names",
    "register",
]
