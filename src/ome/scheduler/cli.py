"""`ome extender serve`: run the kube-scheduler extender."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ._settings import DEFAULT_POLICY, FILTER_CHOSEN, FILTER_FEASIBLE, PLANNED_POLICY, ExtenderSettings

extender_app = typer.Typer(no_args_is_help=True, help="The kube-scheduler extender (filter, prioritize, bind, preempt).")


@extender_app.callback()
def _main() -> None:
    """The kube-scheduler extender."""


@extender_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    policy: Annotated[str, typer.Option(help="Placement policy (ome.solver registry), or ome-plan: ome following a plan of the target workload.")] = DEFAULT_POLICY,
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig; default $KUBECONFIG, ~/.kube/config or in-cluster.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Private key of --tls-cert.")] = None,
    target: Annotated[Path | None, typer.Option(help="Pod-list CSV whose shapes are the target workload (fgd); default: the pods in the cluster.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the per-pod tie-break.")] = 0,
    tie_break: Annotated[str, typer.Option(help="Equal top scores: 'random' (seeded per pod) or 'first' (name order).")] = "random",
    filter_mode: Annotated[str, typer.Option(help=f"{FILTER_CHOSEN!r}: filter returns only the chosen node; {FILTER_FEASIBLE!r}: every feasible node, the choice scored 10 by prioritize.")] = FILTER_CHOSEN,
    reservation_ttl: Annotated[float, typer.Option(help="Seconds a filter's reservation waits for its bind.")] = 30.0,
    plan_seconds: Annotated[float, typer.Option(help="ome-plan: CP-SAT seconds per candidate plan, solved in a separate process.")] = 30.0,
    plan_checks: Annotated[int, typer.Option(help="ome-plan: resampled arrival orders that choose among the candidate plans and that the chosen one must beat ome alone on (0: no check).")] = 6,
    plan_candidates: Annotated[int, typer.Option(help="ome-plan: candidate plans solved for the check to choose from.")] = 3,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "INFO",
) -> None:
    """Serve filter/prioritize/bind/preempt, /healthz and /metrics, from a watch-backed cache."""
    import uvicorn

    from ome.domain import InvalidInput
    from ome.solver import policy_names

    from ._app import create_app
    from ._engine import Extender
    from ._kube import HttpKube
    from ._target import pods_from_csv
    from ome.solver import TargetWorkload

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per watch and bind otherwise
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if policy not in policy_names() and policy != PLANNED_POLICY:
        known = ", ".join([*policy_names(), PLANNED_POLICY])
        raise typer.BadParameter(f"unknown policy {policy!r}; known: {known}", param_hint="--policy")
    try:
        settings = ExtenderSettings(policy=policy, seed=seed, tie_break=tie_break, target_path=target, filter_mode=filter_mode,
                                    reservation_ttl_s=reservation_ttl, plan_seconds=plan_seconds,
                                    plan_checks=plan_checks, plan_candidates=plan_candidates)
        target_pods = pods_from_csv(target) if target else []
        engine = Extender(settings, target=TargetWorkload.from_pods(target_pods) if target_pods else None,
                          warm_shapes=target_pods)
    except (InvalidInput, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    kube = HttpKube(str(kubeconfig) if kubeconfig else None)
    app = create_app(engine, kube)
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, log_level="warning", access_log=False)
