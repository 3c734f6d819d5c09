"""Prometheus metrics on /metrics, in the operator's own registry (no process-global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ._reconcile import Plan


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("ome_operator_cycles", "Reconcile cycles run", registry=r)
        self.errors = Counter("ome_operator_cycle_errors", "Reconcile cycles that raised", registry=r)
        self.plan_seconds = Histogram("ome_operator_plan_seconds", "Time to plan one cycle (snapshot to plan)",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.cycle_seconds = Histogram("ome_operator_cycle_seconds", "Time of one cycle including API writes",
                                       buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.writes = Counter("ome_operator_writes", "API writes by stage", ["stage"], registry=r)
        self.evictions = Counter("ome_operator_evictions", "Pods evicted for higher-priority placements", registry=r)
        self.desired = Gauge("ome_operator_replicas_desired", "Desired replicas", ["namespace", "placement"],
                             registry=r)
        self.placed = Gauge("ome_operator_replicas_placed", "Replicas with every member reserved or running",
                            ["namespace", "placement"], registry=r)
        self.running = Gauge("ome_operator_replicas_running", "Replicas with every member running",
                             ["namespace", "placement"], registry=r)
        self.cost = Gauge("ome_operator_hourly_cost_usd", "Hourly cost of the placed replicas",
                          ["namespace", "placement"], registry=r)
        self.unschedulable = Gauge("ome_operator_unschedulable_replicas", "Replicas that could not be placed",
                                   registry=r)
        self._server: Any = None
        self.port: int | None = None

    def observe(self, plan: Plan, plan_s: float, cycle_s: float) -> None:
        self.cycles.inc()
        self.plan_seconds.observe(plan_s)
        self.cycle_seconds.observe(cycle_s)
        self.unschedulable.set(plan.unschedulable_replicas)
        seen: set[tuple[str, ...]] = set()
        for s in plan.summaries:
            seen.add((s.namespace, s.name))
            self.desired.labels(s.namespace, s.name).set(s.desired)
            self.placed.labels(s.namespace, s.name).set(s.placed)
            self.running.labels(s.namespace, s.name).set(s.running)
            self.cost.labels(s.namespace, s.name).set(s.cost_micro_usd_per_hour / 1_000_000)
        for gauge in (self.desired, self.placed, self.running, self.cost):
            for key in list(gauge._metrics):  # placements deleted since the last cycle
                if tuple(key) not in seen:
                    gauge.remove(*key)

    def serve(self, host: str, port: int) -> int:
        """Start /metrics on host:port (0 = any free port); returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = int(server.server_address[1])
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
