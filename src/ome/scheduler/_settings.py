"""ExtenderSettings: every knob of the extender, built once at the edge (CLI) and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_POLICY = "ome"
"""The policy `ome extender serve` uses without --policy: the best online policy in the registry."""

PLANNED_POLICY = "ome-plan"
"""`ome` following a placement plan of the target workload, solved in a separate process
(ome.solver.cpsat.plan_slots) when the target is (re)built; `ome` alone until the plan is in."""

FILTER_FEASIBLE = "feasible"
FILTER_CHOSEN = "chosen"


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    policy: str = DEFAULT_POLICY
    """Name in ome.solver's policy registry (`ome.solver.policy_names()`), or PLANNED_POLICY."""
    seed: int = 0
    """Seed of the per-pod tie-break (see tie_break_rng) and of seeded policies."""
    tie_break: str = "random"
    """Among nodes with the top score: "random" (seeded per pod, as kube-scheduler's selectHost
    draws at random) or "first" (the first in name order, like `ome simulate --tie-break first`
    on a node list in name order)."""
    target_path: Path | None = None
    """Pod list (openb CSV: cpu_milli, num_gpu, gpu_milli[, gpu_spec]) giving the target workload
    of policies that need one (fgd). None: the shapes of the pods seen in the cluster."""
    target_refresh_s: float = 600.0
    """With target_path None: how often the observed target workload is rebuilt, seconds."""
    filter_mode: str = FILTER_CHOSEN
    """"chosen": filter returns only the node it chose (with its GPUs reserved), so kube-scheduler
    has one feasible node, skips scoring and prioritize, and binds there: one extender call on
    the critical path of a pod. "feasible": filter returns every node where the pod fits and
    prioritize gives the chosen one 10 (others 0..4), so kube-scheduler's soft preferences
    (preferred affinity, spread) still weigh in, at the price of a second call (kube-scheduler
    calls prioritize after its own scoring, not beside it): about half the throughput at
    1,213 nodes (benchmarks/bench_extender_throughput.py)."""
    reservation_ttl_s: float = 30.0
    """A filter's reservation is dropped if no bind for the pod arrives within this time."""
    bind_ttl_s: float = 60.0
    """A bind whose outcome is unknown (apiserver timeout) holds its GPUs this long at most,
    unless the watch shows the pod bound first."""
    bind_timeout_s: float = 10.0
    """Timeout of the Binding call to the apiserver, seconds."""
    max_body_bytes: int = 64 << 20
    """Largest request body accepted (a non-cache-capable NodeList of thousands of nodes)."""
    plan_seconds: float = 30.0
    """With PLANNED_POLICY: CP-SAT time limit of one candidate plan."""
    plan_checks: int = 6
    """With PLANNED_POLICY: resampled arrival orders the candidate plans are compared on, and
    the best must beat `ome` alone on to be adopted (0: the best-packed one, unchecked)."""
    plan_candidates: int = 3
    """With PLANNED_POLICY: plans solved (each for plan_seconds) for the check to choose from."""
    exact_preempt_max: int = 12
    """Preempt: exact search over victim subsets when a node has at most this many candidates."""

    def __post_init__(self) -> None:
        if self.tie_break not in ("random", "first"):
            raise ValueError("tie_break must be 'random' or 'first'")
        if self.filter_mode not in (FILTER_FEASIBLE, FILTER_CHOSEN):
            raise ValueError(f"filter_mode must be {FILTER_FEASIBLE!r} or {FILTER_CHOSEN!r}")
        for name in ("reservation_ttl_s", "bind_ttl_s", "bind_timeout_s", "target_refresh_s", "plan_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.plan_checks < 0:
            raise ValueError("plan_checks must be >= 0")
        if self.plan_candidates < 1:
            raise ValueError("plan_candidates must be >= 1")
