"""The `ome` command."""

import typer

from ome.simulations.cluster.cli import cluster_app

app = typer.Typer(no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
