"""The planner loop: snapshot -> reconcile -> apply, one cycle at a time, never on a stale view.

After its writes, a cycle leaves *expectations* (the pod exists and carries its reservation,
the gate is gone, the pod is on its way out). The next cycle waits until the watches show
them (or `expectation_timeout_s` passes): planning on a view that lacks the last cycle's
reservations could hand the same GPUs out twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._kube import KubeClient, KubeError
from ._metrics import Metrics
from ._model import PodView, Snapshot
from ._reconcile import CreatePod, DeletePod, EvictPod, PatchPod, Plan, reconcile
from ._settings import OperatorSettings

log = logging.getLogger("ome.operator")


class SnapshotSource(Protocol):
    def snapshot(self) -> Snapshot: ...


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the watches must show about one pod before the next cycle plans."""

    namespace: str
    name: str
    want: str  # "created" | "reserved" | "released" | "gone"
    node: str = ""

    def met(self, pods: dict[tuple[str, str], PodView]) -> bool:
        pod = pods.get((self.namespace, self.name))
        if self.want == "created":  # it must appear (with its reservation, when created with one)
            return pod is not None and (not self.node or pod.terminating or pod.planned_node == self.node)
        if self.want == "gone":
            return pod is None or pod.terminating
        if pod is None or pod.terminating:
            return True  # nothing left to wait for
        if self.want == "reserved":
            return pod.planned_node == self.node
        return not pod.gated  # released


@dataclass
class CycleReport:
    plan: Plan
    failed: list[str] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)
    seconds: float = 0.0


def _expect(action: Any) -> Expectation | None:
    if isinstance(action, CreatePod):
        return Expectation(action.namespace, action.name, "created", action.planned_node)
    if isinstance(action, PatchPod):
        if action.release:
            return Expectation(action.namespace, action.name, "released")
        if action.planned_node:
            return Expectation(action.namespace, action.name, "reserved", action.planned_node)
        return None
    if isinstance(action, (EvictPod, DeletePod)):
        return Expectation(action.namespace, action.name, "gone")
    return None


def apply_plan(plan: Plan, kube: KubeClient, workers: int = 8, metrics: Metrics | None = None) -> CycleReport:
    """Apply the stages in order; within a stage, writes run concurrently. A failed write stops
    nothing else in its stage, but a failed reservation holds back the evictions made for it."""
    report = CycleReport(plan)

    def run(stage: str, actions: Sequence[Any], call: Callable[[Any], Any]) -> list[Any]:
        done: list[Any] = []
        if not actions:
            return done

        def one(action: Any) -> Any:
            try:
                call(action)
            except KubeError as exc:
                report.failed.append(f"{stage} {getattr(action, 'namespace', '')}/{getattr(action, 'name', '')}: {exc}")
                log.warning("%s failed: %s", stage, exc)
                return None
            if metrics is not None:
                metrics.writes.labels(stage).inc()
            return action

        if workers <= 1 or len(actions) == 1:
            results = [one(a) for a in actions]
        else:
            with ThreadPoolExecutor(min(workers, len(actions)), thread_name_prefix=f"ome-{stage}") as pool:
                results = list(pool.map(one, actions))
        done = [a for a in results if a is not None]
        report.expectations += [e for a in done if (e := _expect(a)) is not None]
        return done

    run("placement", plan.placements, lambda a: kube.apply_placement(a.body, a.exists))

    def reserve(action: CreatePod | PatchPod) -> None:
        if isinstance(action, CreatePod):
            kube.create_pod(action.namespace, action.manifest)
        else:
            kube.patch_pod(action.namespace, action.name, action.patch)

    reserved = run("reserve", plan.reserve, reserve)
    evictions = plan.evict
    if len(reserved) < len(plan.reserve):
        # Some reservation did not land: evict nothing this cycle (the next one re-plans).
        report.failed.append(f"evictions held back: {len(plan.reserve) - len(reserved)} reservation(s) failed")
        evictions = ()

    def evict(action: EvictPod) -> None:
        if not kube.evict_pod(action.namespace, action.name, action.uid):
            raise KubeError(f"eviction of {action.namespace}/{action.name} refused (PodDisruptionBudget)", 429)

    evicted = run("evict", evictions, evict)
    if metrics is not None:
        metrics.evictions.inc(len(evicted))

    def release(action: PatchPod | DeletePod) -> None:
        if isinstance(action, DeletePod):
            kube.delete_pod(action.namespace, action.name, action.uid)
        else:
            kube.patch_pod(action.namespace, action.name, action.patch)

    run("release", plan.release, release)
    run("status", plan.statuses, lambda a: kube.patch_placement_status(a.namespace, a.name, a.status))
    run("event", plan.events, kube.post_event)
    return report


class PlannerLoop:
    """Runs cycles when poked (watch events), at least every `resync_s`, never two at once."""

    def __init__(self, settings: OperatorSettings, kube: KubeClient, source: SnapshotSource,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.kube = kube
        self.source = source
        self.metrics = metrics
        self.expectations: list[Expectation] = []
        self._expect_since = 0.0
        self._wake: asyncio.Event | None = None
        self.ready = False
        self.cycles = 0

    # -- synchronous core (tests drive this directly) -------------------------------------
    def expectations_met(self, snap: Snapshot) -> bool:
        if not self.expectations:
            return True
        pods = {p.key: p for p in snap.pods}
        self.expectations = [e for e in self.expectations if not e.met(pods)]
        return not self.expectations

    def cycle(self, snap: Snapshot | None = None) -> CycleReport:
        snap = snap if snap is not None else self.source.snapshot()
        began = time.perf_counter()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        plan = reconcile(snap, self.settings.scheduling.scheduler_name, now)
        planned = time.perf_counter()
        report = apply_plan(plan, self.kube, self.settings.loop.write_workers, self.metrics)
        report.seconds = time.perf_counter() - began
        self.expectations = report.expectations
        self._expect_since = time.monotonic()
        self.cycles += 1
        if self.metrics is not None:
            self.metrics.observe(plan, planned - began, report.seconds)
        if plan.pod_writes or report.failed:
            log.info("cycle %d: %d reserve, %d evict, %d release/delete, %d status, %d failed in %.2fs",
                     self.cycles, len(plan.reserve), len(plan.evict), len(plan.release), len(plan.statuses),
                     len(report.failed), report.seconds)
        return report

    # -- asynchronous driver ----------------------------------------------------------------
    def poke(self) -> None:
        self.ready = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        self._wake = asyncio.Event()
        loop = self.settings.loop
        while not self.ready:
            await asyncio.sleep(0.05)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=loop.resync_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await asyncio.sleep(loop.debounce_s)
            snap = self.source.snapshot()
            if not self.expectations_met(snap):
                if time.monotonic() - self._expect_since < loop.expectation_timeout_s:
                    await asyncio.sleep(0.05)
                    self._wake.set()
                    continue
                log.warning("watches did not show %d expected write(s) within %.0fs; planning anyway (e.g. %s)",
                            len(self.expectations), loop.expectation_timeout_s, self.expectations[0])
                self.expectations = []
            try:
                await asyncio.to_thread(self.cycle, snap)
            except Exception:  # a bug must not stop the operator: log it, retry on the next poke
                log.exception("reconcile cycle failed")
                if self.metrics is not None:
                    self.metrics.errors.inc()
                await asyncio.sleep(1.0)


__all__ = ["CycleReport", "Expectation", "PlannerLoop", "SnapshotSource", "apply_plan"]
