"""The `ome` command: simulate, cluster, extender, operator."""

from __future__ import annotations

import typer

from ome.simulations.cli import simulate
from ome.simulations.cluster.cli import cluster_app

app = typer.Typer(no_args_is_help=True, help="OME placement engine: GPU packing for model serving on Kubernetes.")
app.command()(simulate)
app.add_typer(cluster_app, name="cluster", help="A local simulated GPU cluster (etcd, apiserver, scheduler, kwok).")

try:  # front ends land independently; each mounts itself when present
    from ome.scheduler.cli import extender_app

    app.add_typer(extender_app, name="extender", help="The kube-scheduler extender.")
except ImportError:  # pragma: no cover
    pass
try:
    from ome.operator.cli import operator_app

    app.add_typer(operator_app, name="operator", help="The placement operator.")
except ImportError:  # pragma: no cover
    pass
