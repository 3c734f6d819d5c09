"""SolverSettings: the one place CP-SAT parameters are chosen."""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model


@dataclass(frozen=True, slots=True)
class SolverSettings:
    """Knobs mapped one-to-one onto ``CpSolver.parameters``.

    The time limit is for a whole call (``solve_optimum`` or ``repack``); the call splits it
    between its inner CP-SAT solves and stops starting new ones once it is spent.
    """

    max_time_in_seconds: float = 10.0
    """Wall-clock budget of one call, seconds. 10 s keeps a 7-level x 10-seed sweep near 12 min."""
    num_workers: int = 2
    """CP-SAT search workers. 8+ gives the full portfolio; 1 is reproducible; 2 suits a shared laptop."""
    random_seed: int = 0
    """CP-SAT seed, and the seed of the neighbourhood choice in the large-neighbourhood search."""
    log_search_progress: bool = False
    """Print CP-SAT's search log (stdout); for debugging only."""

    def __post_init__(self) -> None:
        if self.max_time_in_seconds <= 0:
            raise ValueError("max_time_in_seconds must be > 0")
        if self.num_workers < 1:
            raise ValueError("num_workers must be >= 1")

    def solver(self, seconds: float | None = None) -> cp_model.CpSolver:
        """A CpSolver with these parameters; `seconds` overrides the time limit for one inner solve."""
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.max_time_in_seconds = max(0.01, self.max_time_in_seconds if seconds is None else seconds)
        p.num_workers = self.num_workers
        p.random_seed = self.random_seed
        p.log_search_progress = self.log_search_progress
        return solver
