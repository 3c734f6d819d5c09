"""Prometheus metrics of one extender (its own registry, so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

GAUGES = {
    "nodes": "Nodes in the cache",
    "bad_nodes": "Nodes the cache could not read (e.g. more than 16 GPUs)",
    "pods": "Non-terminal pods in the cache",
    "gpus": "GPUs on the cached nodes",
    "gpus_allocated": "GPUs allocated (shares summed, in GPUs)",
    "gpus_partially_allocated": "GPUs that are neither idle nor full",
    "gpus_fragmented": "Idle GPU capacity the target workload cannot use (FGD measure, in GPUs)",
    "reserved": "Reservations made by filter and not yet bound",
    "binding": "Binds in flight",
    "bound": "Bound pods holding resources",
    "conflicts": "Bound pods whose resources exceed their node (over-commit seen in the cluster)",
    "unreadable_pods": "Pods ignored because their spec could not be read",
}


class _StateCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, float]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self.stats()
        for key, help_text in GAUGES.items():
            yield GaugeMetricFamily(f"ome_extender_cache_{key}" if key in ("nodes", "pods") else f"ome_extender_{key}",
                                    help_text, value=values.get(key, 0.0))


class Metrics:
    def __init__(self, stats: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("ome_extender_request_seconds", "Time to answer one extender call",
                                 ["verb"], buckets=BUCKETS, registry=self.registry)
        self.decisions = Counter("ome_extender_decisions_total", "Extender answers by outcome",
                                 ["verb", "outcome"], registry=self.registry)
        self.errors = Counter("ome_extender_errors_total", "Refused or failed calls, by reason",
                              ["verb", "reason"], registry=self.registry)
        self.watch_errors = Counter("ome_extender_watch_errors_total", "List/watch failures",
                                    ["resource", "error"], registry=self.registry)
        self.registry.register(_StateCollector(stats))
