"""`ome operator run`: the placement operator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

operator_app = typer.Typer(no_args_is_help=True, help="The placement operator (ModelPlacement, PlacementPolicy).")


@operator_app.callback()
def _main() -> None:
    """The placement operator."""


@operator_app.command()
def run(
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig; default in-cluster, else $KUBECONFIG.")] = None,
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n",
                                                        help="Watch only this namespace (repeatable).")] = None,
    node_selector: Annotated[str, typer.Option(help="Plan only onto nodes with these labels (k=v,k2=v2).")] = "",
    scheduler_name: Annotated[str, typer.Option(help="spec.schedulerName of governed pods.")] = "ome-scheduler",
    metrics_host: Annotated[str, typer.Option(help="Bind address of /metrics.")] = "127.0.0.1",
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics (0: any free port, -1: off).")] = 8080,
    resync: Annotated[float, typer.Option(help="Seconds between cycles without events.")] = 15.0,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Watch ModelPlacements, PlacementPolicy, nodes and pods; plan; write the plan on the pods."""
    from ome.domain import InvalidInput

    from ._runtime import run as run_operator
    from ._settings import ClusterSettings, LoopSettings, MetricsSettings, OperatorSettings, SchedulingSettings
    from ._settings import parse_selector

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = max(logging.WARNING, logging.getLogger().level)
    for noisy in ("kopf", "httpx", "httpcore"):  # per-event and per-request lines
        logging.getLogger(noisy).setLevel(quiet)
    try:
        settings = OperatorSettings(
            cluster=ClusterSettings(kubeconfig, tuple(namespace or ()), parse_selector(node_selector)),
            scheduling=SchedulingSettings(scheduler_name),
            loop=LoopSettings(resync_s=resync),
            metrics=MetricsSettings(metrics_host, None if metrics_port < 0 else metrics_port),
        )
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    run_operator(settings)
