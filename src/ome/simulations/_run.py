"""Run (policy x seed) replays, in parallel processes, over a trace or the embedded default."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from ome.domain import InvalidInput, Node, PodRequest
from ome.solver import ClusterArrays, OmePolicy, Policy, SlotPlan, TargetWorkload, make_policy

from ._replay import ReplayResult, arrival_sequence, replay
from ._synthetic import synthetic_scenario
from ._traces import NODE_FILE, load_nodes, load_pods

SYNTHETIC = "synthetic-llm"

class OfflineRunner(Protocol):
    """A setting that is not an online policy: runner(nodes, sequence, target, seed, seconds),
    seconds being the CP-SAT time limit per call (None: the setting's own default);
    keep_placements: also list where every pod runs at the end (result.placements)."""

    def __call__(self, nodes: Sequence[Node], sequence: Sequence[PodRequest], target: TargetWorkload, seed: int,
                 seconds: float | None, keep_placements: bool = False) -> ReplayResult: ...


OFFLINE_RUNNERS: dict[str, OfflineRunner] = {}


def _offline_runners() -> dict[str, OfflineRunner]:
    if not OFFLINE_RUNNERS:
        from ._offline import RUNNERS  # CP-SAT settings; imported lazily (ortools is heavy)
        from ._preempt import RUNNERS as PREEMPT

        OFFLINE_RUNNERS.update(RUNNERS)
        OFFLINE_RUNNERS.update(PREEMPT)
    return OFFLINE_RUNNERS


@dataclass(frozen=True, slots=True)
class Scenario:
    trace_path: str | None  # None: the embedded synthetic default
    nodes_path: str | None
    inflation: float = 1.3
    as_is: bool = False
    synthetic_seed: int = 7
    tie_break: str = "first"  # equal top scores: lowest node index ("first") or uniform ("random")
    solver_seconds: float | None = None  # CP-SAT limit per optimum level / per repack; None: their defaults

    @property
    def name(self) -> str:
        return Path(self.trace_path).stem if self.trace_path else SYNTHETIC


@lru_cache(maxsize=4)
def load_scenario(s: Scenario) -> tuple[tuple[Node, ...], tuple[PodRequest, ...]]:
    if s.trace_path is None:
        syn = synthetic_scenario(s.synthetic_seed)
        return syn.nodes, syn.pods
    nodes_path = s.nodes_path or str(Path(s.trace_path).parent / NODE_FILE)
    return tuple(load_nodes(nodes_path)), load_pods(s.trace_path).pods


@dataclass(frozen=True, slots=True)
class Task:
    scenario: Scenario
    policy: str
    seed: int


def known_settings() -> set[str]:
    from ome.solver import policy_names

    return set(policy_names()) | set(_offline_runners()) | {OME_PLAN}


OME_PLAN = "ome-plan"  # `ome` following a placement plan of the expected workload (ome.solver.cpsat.plan_slots)
PLAN_SECONDS = 30.0


@lru_cache(maxsize=4)
def plan_for(s: Scenario) -> SlotPlan:
    """The plan `ome-plan` follows on this scenario: its workload (the list the target workload
    is built from) packed at 100 % of the cluster's GPUs; the same for every seed."""
    from ome.solver.cpsat import SolverSettings, plan_slots  # ortools, only when a plan is asked for

    nodes, pods = load_scenario(s)
    return plan_slots(nodes, pods, settings=SolverSettings(max_time_in_seconds=s.solver_seconds or PLAN_SECONDS))


def sequence_for(task: Task) -> tuple[tuple[Node, ...], list[PodRequest]]:
    nodes, pods = load_scenario(task.scenario)
    if task.scenario.as_is:
        return nodes, list(pods)
    capacity = sum(n.gpu_count for n in nodes) * 1000
    return nodes, arrival_sequence(pods, capacity, task.scenario.inflation, task.seed)


def online_policy(task: Task, target: TargetWorkload, plan: SlotPlan | None = None) -> Policy:
    """The online policy task.policy names; ome-plan follows `plan` (solved here if None)."""
    if task.policy == OME_PLAN:
        return OmePolicy(target, plan=plan or plan_for(task.scenario))
    return make_policy(task.policy, seed=task.seed, target=target)


def run_task(task: Task, plan: SlotPlan | None = None) -> ReplayResult:
    """One replay; `plan`: ome-plan's plan when the caller computed it (else computed here)."""
    nodes, seq = sequence_for(task)
    target = TargetWorkload.from_pods(load_scenario(task.scenario)[1])
    offline = _offline_runners().get(task.policy)
    if offline is not None:
        return offline(nodes, seq, target, task.seed, task.scenario.solver_seconds)
    if task.policy == OME_PLAN:
        plan = plan or plan_for(task.scenario)
    policy = online_policy(task, target, plan)
    result = replay(ClusterArrays(nodes), seq, policy, seed=task.seed, target=target,
                    keep_placements=task.scenario.as_is, tie_break=task.scenario.tie_break)
    if plan is not None and task.policy == OME_PLAN:
        shown = {f"plan_{k}": v for k, v in plan.stats.items() if k.startswith("check_") or k in ("candidates", "chosen")}
        result.extra.update(plan_adopted=float(plan.adopted), plan_planned_pct=plan.planned_pct, **shown)
    return result


@dataclass(frozen=True, slots=True)
class LevelState:
    """A replay stopped where an arrived level is first reached: the nodes, the pods arrived by
    then, the cluster as the setting left it, and the result (placements: pod, node, GPUs)."""

    nodes: tuple[Node, ...]
    arrived: list[PodRequest]
    cluster: ClusterArrays
    result: ReplayResult


def replay_to_level(task: Task, level: int, policy: Policy | None = None) -> LevelState:
    """`task` replayed as `ome simulate` replays it, on the arrivals up to `level` % only, keeping
    where each pod runs. Online policies and the rescheduling settings alike (ome-reclaim's state at
    120 %, say); `policy` overrides the online policy built from task.policy. Not the optimum,
    which solves each level on its own."""
    from ._offline import level_prefixes

    nodes, sequence = sequence_for(task)
    target = TargetWorkload.from_pods(load_scenario(task.scenario)[1])
    cluster = ClusterArrays(nodes)
    prefix = level_prefixes(sequence, cluster.gpu_capacity_milli, [level]).get(level)
    if prefix is None:
        reached = 100 * sum(p.gpu_demand_milli for p in sequence) // max(cluster.gpu_capacity_milli, 1)
        raise InvalidInput(f"{task.scenario.name}: arrivals reach {reached} % of the GPUs, never {level} %")
    arrived = sequence[:prefix]
    offline = _offline_runners().get(task.policy) if policy is None else None
    if offline is None:
        policy = policy or online_policy(task, target)
        result = replay(cluster, arrived, policy, seed=task.seed, target=target, keep_placements=True,
                        tie_break=task.scenario.tie_break)
        return LevelState(nodes, arrived, cluster, result)
    result = offline(nodes, arrived, target, task.seed, task.scenario.solver_seconds, keep_placements=True)
    by_name = {pod.name: pod for pod in arrived}
    for name, node, gpus in result.placements:  # rebuilt: the runners keep their own cluster
        cluster.allocate(by_name[name], cluster.index[node], gpus)
    return LevelState(nodes, arrived, cluster, result)


def run_all(
    tasks: Sequence[Task], workers: int | None = None, on_done: Callable[[Task, ReplayResult], None] | None = None
) -> dict[str, list[ReplayResult]]:
    """Results grouped by policy, seeds in task order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    results: dict[Task, ReplayResult] = {}
    if workers == 1:
        for t in tasks:
            results[t] = run_task(t)
            if on_done:
                on_done(t, results[t])
    else:
        # A plan is solved once per scenario, here, rather than in every worker at once.
        plans = {s: plan_for(s) for s in {t.scenario for t in tasks if t.policy == OME_PLAN}}
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(run_task, t, plans.get(t.scenario)): t for t in tasks}
            for fut in as_completed(futures):
                t = futures[fut]
                results[t] = fut.result()
                if on_done:
                    on_done(t, results[t])
    grouped: dict[str, list[ReplayResult]] = {}
    for t in tasks:
        grouped.setdefault(t.policy, []).append(results[t])
    return grouped
