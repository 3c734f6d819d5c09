"""`ome simulate`: the FGD-protocol replay from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ome.domain import InvalidInput
from ome.solver import TIE_BREAKS

from ._replay import LEVELS
from ._report import plot, report, write_json
from ._run import OME_PLAN, PLAN_SECONDS, Scenario, Task, known_settings, load_scenario, run_all
from ._traces import resolve_trace

console = Console(stderr=True)


def simulate(
    trace: Annotated[Optional[str], typer.Option(help="trace name (e.g. default) or CSV path; omit for the embedded synthetic LLM cluster")] = None,
    nodes: Annotated[Optional[Path], typer.Option(help="node list CSV (default: openb_node_list_gpu_node.csv beside the trace)")] = None,
    trace_dir: Annotated[Optional[Path], typer.Option(help="folder of openb CSVs (default: $OME_TRACE_DIR)")] = None,
    policy: Annotated[str, typer.Option(help="comma-separated policies: online ones (ome, fgd, bestfit, ...), and the "
                                              "settings ome-plan, optimum, ome-repack, ome-preempt, ome-preempt-repack, ome-reclaim")] = "ome,fgd,bestfit",
    seeds: Annotated[int, typer.Option(min=1, help="number of seeds")] = 10,
    first_seed: Annotated[int, typer.Option(help="first seed")] = 42,
    inflation: Annotated[float, typer.Option(min=0.1, help="arrivals up to this multiple of GPU capacity")] = 1.3,
    as_is: Annotated[bool, typer.Option("--as-is", help="replay the file's pods once, in file order")] = False,
    tie_break: Annotated[str, typer.Option(help="equal top scores go to the first node in list order ('first') or a random one ('random')")] = "first",
    workers: Annotated[Optional[int], typer.Option(help="parallel processes (default: CPU count)")] = None,
    solver_seconds: Annotated[Optional[float], typer.Option(
        help="CP-SAT time limit per level (optimum), per repack (ome-repack, ome-preempt-repack, ome-reclaim) or per candidate plan (ome-plan); default 10, 20 and 30. "
        "Each solve uses 2 threads: with --workers 1 it has the 2 cores to itself")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the JSON report here")] = None,
    plot_out: Annotated[Optional[Path], typer.Option("--plot", help="write the Figure 9(a)-style PNG here")] = None,
) -> None:
    """Replay pods one at a time onto a GPU cluster and report unallocated GPU % per policy."""
    try:
        names = [p.strip() for p in policy.split(",") if p.strip()]
        unknown = [p for p in names if p not in known_settings()]
        if unknown:
            raise InvalidInput(f"unknown policy {', '.join(unknown)}; known: {', '.join(sorted(known_settings()))}")
        trace_path = str(resolve_trace(trace, trace_dir)) if trace else None
        if tie_break not in TIE_BREAKS:
            raise InvalidInput(f"--tie-break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
        if solver_seconds is not None and solver_seconds <= 0:
            raise InvalidInput(f"--solver-seconds must be > 0, got {solver_seconds}")
        scenario = Scenario(trace_path, str(nodes) if nodes else None, inflation, as_is, tie_break=tie_break,
                            solver_seconds=solver_seconds)
        node_list, pods = load_scenario(scenario)
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    seed_list = [first_seed] if as_is else list(range(first_seed, first_seed + seeds))
    tasks = [Task(scenario, p, s) for p in names for s in seed_list]
    gpus = sum(n.gpu_count for n in node_list)
    console.print(f"{scenario.name}: {len(node_list)} nodes, {gpus} GPUs, {len(pods)} pods in the trace; {len(tasks)} runs")
    if OME_PLAN in names:
        console.print(f"{OME_PLAN}: solving candidate placement plans first ({scenario.solver_seconds or PLAN_SECONDS:.0f} s "
                      "of CP-SAT each, then the check that chooses one and compares it with ome alone)")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        job = bar.add_task("replaying", total=len(tasks))
        by_policy = run_all(tasks, workers, on_done=lambda t, r: bar.advance(job))
    data = report(scenario.name, len(node_list), gpus, seed_list, inflation, by_policy)
    _print_table(data)
    plan = data["policies"].get(OME_PLAN, {}).get("plan")
    if plan:
        which = f"{int(plan.get('chosen', 0)) + 1} of {int(plan.get('candidates', 1))}"
        console.print(f"{OME_PLAN}: plan {which} {'adopted' if plan['adopted'] else 'not adopted (placed as ome)'}; its check: "
                      f"{plan.get('check_followed_pct', 0):.2f} % of the GPUs allocated following it, "
                      f"{plan.get('check_alone_pct', 0):.2f} % without")
    if json_out:
        write_json(data, json_out)
        console.print(f"wrote {json_out}")
    if plot_out:
        plot(by_policy, plot_out, f"{scenario.name}: unallocated GPU vs arrived workload")
        console.print(f"wrote {plot_out}")


def _print_table(data: dict) -> None:  # type: ignore[type-arg]
    table = Table(title=f"unallocated GPU % (median over {len(data['seeds'])} seed(s)) — {data['trace']}")
    table.add_column("policy")
    for level in LEVELS:
        table.add_column(f"{level}%", justify="right")
    table.add_column("pods/s", justify="right")
    for name, block in data["policies"].items():
        cells = [f"{block['unallocated_gpu_pct'][str(l)]['median']:.2f}" if str(l) in block["unallocated_gpu_pct"] else "-" for l in LEVELS]
        table.add_row(name, *cells, f"{block['pods_per_second']:.0f}")
    Console().print(table)
