"""Solves the extender's placement plan (`--policy ome-plan`) off the request path.

The plan is a CP-SAT solve of tens of seconds. It runs in a separate, spawned process: the
extender process never loads OR-Tools (it slows every verb a little) and a solve can neither
hold the GIL nor take the cache's lock. One solve at a time; the engine installs the result.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from ome.domain import Node, PodRequest
from ome.solver import SlotPlan

from ._engine import Extender
from ._settings import PLANNED_POLICY

log = logging.getLogger("ome.scheduler")


def _solve(nodes: Sequence[Node], pods: Sequence[PodRequest], seconds: float, checks: int, candidates: int) -> SlotPlan:
    # Runs in the child process only. Imported by name so that the extender process, which
    # pickles this function by reference, never imports OR-Tools (.importlinter holds it to that).
    cpsat = importlib.import_module("ome.solver.cpsat")
    plan: SlotPlan = cpsat.plan_slots(nodes, pods, settings=cpsat.SolverSettings(max_time_in_seconds=seconds),
                                      validation_runs=checks, candidates=candidates)
    return plan


def solve_plan(engine: Extender) -> bool:
    """Solve and install a plan if the engine wants one now; True if one was installed."""
    inputs = engine.plan_inputs()
    if inputs is None:
        return False
    nodes, pods = inputs
    started = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            settings = engine.settings
            plan = pool.submit(_solve, nodes, pods, settings.plan_seconds, settings.plan_checks,
                               settings.plan_candidates).result()
    except Exception:  # noqa: BLE001 - the extender keeps placing with `ome` alone
        log.exception("placement plan failed; placing without one until the next try")
        engine.set_plan(None)
        return False
    engine.set_plan(plan)
    log.info("placement plan: %d slots on %d nodes, %.1f %% of the GPUs planned, %s (candidate %d of %d; check: "
             "%.2f %% allocated following it, %.2f %% without), in %.1fs", plan.count(), len(plan.slots),
             plan.planned_pct, "adopted" if plan.adopted else "not adopted", plan.stats.get("chosen", 0.0) + 1,
             plan.stats.get("candidates", 1.0), plan.stats.get("check_followed_pct", 0.0),
             plan.stats.get("check_alone_pct", 0.0), time.perf_counter() - started)
    return True


class Planner:
    """Starts solve_plan in a daemon thread when the engine wants a plan and none is running."""

    def __init__(self, engine: Extender) -> None:
        self.engine = engine
        self._busy = threading.Event()

    def poke(self) -> None:
        if self.engine.settings.policy != PLANNED_POLICY or self._busy.is_set():
            return
        self._busy.set()
        threading.Thread(target=self._run, name="ome-plan", daemon=True).start()

    def _run(self) -> None:
        try:
            solve_plan(self.engine)
        finally:
            self._busy.clear()
