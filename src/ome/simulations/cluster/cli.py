"""`ome cluster up|down|status`: a local simulated GPU cluster for what-if runs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ome.domain import Node, OmeError
from ome.simulations._traces import NODE_FILE, load_nodes, trace_dir

from ._binaries import MissingBinaries, find_binaries
from ._launcher import PID_FILE, ClusterSettings, LocalCluster, running_processes, stop_directory
from ._nodes import synthetic_nodes, with_derived_placement

DIR_ENV = "OME_CLUSTER_DIR"

cluster_app = typer.Typer(help="A local Kubernetes control plane with simulated (kwok) GPU nodes.",
                          no_args_is_help=True)
console = Console(stderr=True)


def default_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ome" / "cluster"


DirOption = Annotated[Path | None, typer.Option("--dir", help=f"Cluster folder (default: ${DIR_ENV} or "
                                                "~/.cache/ome/cluster).", show_default=False)]


def _nodes(nodes_from: str | None, synthetic: int) -> list[Node]:
    nodes: list[Node] = []
    if nodes_from:
        path = trace_dir() / NODE_FILE if nodes_from == "openb" else Path(nodes_from)
        nodes += with_derived_placement(load_nodes(path))
    if synthetic:
        nodes += synthetic_nodes(synthetic)
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise typer.BadParameter("node names repeat between --nodes-from and --synthetic")
    return nodes


@cluster_app.command()
def up(
    nodes_from: Annotated[str | None, typer.Option(
        "--nodes-from", help="'openb' ($OME_TRACE_DIR/openb_node_list_gpu_node.csv) or a node-list CSV path.")] = None,
    synthetic: Annotated[int, typer.Option(
        "--synthetic", min=0, help="Add N synthetic nodes (H100 8x80GB, A100 8x40GB, L4 4x24GB; 3 zones).")] = 0,
    extender: Annotated[str | None, typer.Option(
        "--extender", help="Configure kube-scheduler with this extender urlPrefix.")] = None,
    directory: DirOption = None,
    detach: Annotated[bool, typer.Option(
        "--detach", help="Return once ready and leave the cluster running (stop it with `ome cluster down`).")] = False,
    controller_manager: Annotated[bool, typer.Option(
        "--controller-manager/--no-controller-manager", help="Run kube-controller-manager.")] = True,
) -> None:
    """Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, then create the nodes."""
    began = time.monotonic()
    try:
        nodes = _nodes(nodes_from, synthetic)
        find_binaries()  # fail before creating anything
    except MissingBinaries as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except OmeError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    folder = (directory or default_dir()).resolve()
    cluster = LocalCluster(ClusterSettings(directory=folder, extender_url=extender,
                                           controller_manager=controller_manager, tie_to_parent=not detach))
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)
        last = {"step": "", "at": began}

        def step(message: str) -> None:
            now = time.monotonic()
            if last["step"]:
                progress.console.print(f"[dim]{now - began:5.1f}s[/dim] {last['step']} "
                                       f"[dim]({now - float(last['at']):.1f}s)[/dim]", highlight=False)
            last.update(step=message, at=now)
            progress.update(task, description=message, completed=0, total=None)

        def count(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            cluster.start(nodes, step=step, node_progress=count)
        except OmeError as exc:
            console.print(f"[red]cluster start failed:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    elapsed = time.monotonic() - began
    _summary(cluster, len(nodes), elapsed)
    if detach:
        cluster.detach()
        print(cluster.kubeconfig)
        return
    console.print("running in the foreground; Ctrl-C stops every component")
    try:
        cluster.wait()
    except KeyboardInterrupt:
        console.print("stopping")
    except OmeError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    finally:
        cluster.stop()


def _summary(cluster: LocalCluster, nodes: int, elapsed: float) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("ready in", f"{elapsed:.1f}s ({nodes} kwok nodes Ready)")
    table.add_row("api server", cluster.server)
    table.add_row("kubeconfig", str(cluster.kubeconfig))
    table.add_row("folder", f"{cluster.directory} (logs in logs/)")
    table.add_row("pids", ", ".join(f"{k}={v}" for k, v in cluster.pids.items()))
    console.print(table)
    console.print(f"export KUBECONFIG={cluster.kubeconfig}", highlight=False)


@cluster_app.command()
def down(directory: DirOption = None) -> None:
    """Stop every process `ome cluster up` started in the folder (read from its pid file)."""
    folder = (directory or default_dir()).resolve()
    if not (folder / PID_FILE).exists():
        console.print(f"no cluster recorded in {folder}")
        return
    try:
        stopped = stop_directory(folder)
    except OmeError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running in {folder}")


@cluster_app.command()
def status(directory: DirOption = None) -> None:
    """Say which components of the cluster in the folder run; exit 1 when none does."""
    folder = (directory or default_dir()).resolve()
    running = running_processes(folder) if (folder / PID_FILE).exists() else []
    if not running:
        console.print(f"no cluster running in {folder}")
        raise typer.Exit(1)
    console.print(f"running: {', '.join(running)}")
    print(folder / "kubeconfig")
