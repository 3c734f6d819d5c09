"""Batch optimisation with OR-Tools CP-SAT: the offline optimum and the global repack.

The only package that imports ortools; ome.solver does not import it, so the per-pod path
never loads the CP-SAT runtime. Import it explicitly:

    from ome.solver.cpsat import SolverSettings, solve_optimum, repack
"""

from ._optimum import FEASIBLE, OPTIMAL, OptimumResult, solve_optimum
from ._plan import expected_pods, plan_slots
from ._repack import Move, RepackResult, repack
from ._settings import SolverSettings
from ._state import verify

__all__ = [
    "FEASIBLE",
    "OPTIMAL",
    "Move",
    "OptimumResult",
    "RepackResult",
    "SolverSettings",
    "expected_pods",
    "plan_slots",
    "repack",
    "solve_optimum",
    "verify",
]
