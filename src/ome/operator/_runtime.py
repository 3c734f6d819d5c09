"""Run the operator: load credentials, start /metrics, run kopf standalone on our registry."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf

from ._handlers import KopfSource, build_registry
from ._kube import Connection, RealKube
from ._loop import PlannerLoop
from ._metrics import Metrics
from ._settings import OperatorSettings

log = logging.getLogger("ome.operator")


def run(settings: OperatorSettings, stop_flag: threading.Event | None = None,
        ready_flag: threading.Event | None = None, on_metrics_port: Any = None) -> None:
    """Block until stopped (SIGINT/SIGTERM in the main thread, or `stop_flag`)."""
    connection = Connection.load(settings.cluster.kubeconfig)
    metrics = Metrics()
    if settings.metrics.port is not None:
        port = metrics.serve(settings.metrics.host, settings.metrics.port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
        if on_metrics_port is not None:
            on_metrics_port(port)
    kube = RealKube(connection.http(connections=max(4, settings.loop.write_workers * 2)))
    source = KopfSource()
    loop = PlannerLoop(settings, kube, source, metrics)
    registry = build_registry(settings, loop, source, connection)
    namespaces = list(settings.cluster.namespaces)
    try:
        asyncio.run(kopf.operator(registry=registry, standalone=True, clusterwide=not namespaces,
                                  namespaces=namespaces, stop_flag=stop_flag, ready_flag=ready_flag,
                                  memo=kopf.Memo()))
    finally:
        metrics.stop()
        kube.close()
