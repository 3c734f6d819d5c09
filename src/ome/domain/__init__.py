"""The shared vocabulary: nodes, pod requests, allocation state, outcome codes. Stdlib only."""

from ._errors import InvalidInput, InvariantViolation, OmeError
from ._model import MILLI, ON_DEMAND, SPOT, Assignment, Node, PodRequest
from ._state import ClusterState
from ._status import SUCCESS, Code, Status

__all__ = [
    "MILLI",
    "ON_DEMAND",
    "SPOT",
    "SUCCESS",
    "Assignment",
    "ClusterState",
    "Code",
    "InvalidInput",
    "InvariantViolation",
    "Node",
    "OmeError",
    "PodRequest",
    "Status",
]
