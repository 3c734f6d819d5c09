"""The `ome` command: simulate, cluster, extender, operator."""

from __future__ import annotations

import typer

from ome.operator.cli import operator_app
from ome.scheduler.cli import extender_app
from ome.simulations.cli import simulate
from ome.simulations.cluster.cli import cluster_app

app = typer.Typer(no_args_is_help=True, help="OME placement engine: GPU packing for model serving on Kubernetes.")
app.command()(simulate)
app.add_typer(cluster_app, name="cluster", help="A local simulated GPU cluster (etcd, apiserver, scheduler, kwok).")
app.add_typer(extender_app, name="extender", help="The kube-scheduler extender.")
app.add_typer(operator_app, name="operator", help="The placement operator.")
