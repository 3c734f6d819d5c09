"""The FastAPI app: POST filter / prioritize / bind / preempt, GET healthz / metrics / debug/state.

Handlers are thin: parse (._wire), decide (._engine.Extender), reply (._wire). Bad input gets a
4xx whose body says why ({"Error": reason}); a cache that has not finished its first list
answers 503 (kube-scheduler retries the pod after a back-off); nothing else is a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ome.domain import InvalidInput

from ._asgi import BodyTooLarge, Reply, VerbApp, read_body
from ._engine import Extender, Refused
from ._informer import Reflector, Resource, start_reflectors
from ._kube import KubeApi, KubeError
from ._metrics import Metrics
from ._planner import Planner
from ._translate import pod_from_v1
from ._wire import (
    BadRequest,
    HostPriorityEncoder,
    binding_args,
    binding_result,
    dumps,
    extender_args,
    filter_result,
    loads,
    preemption_args,
    preemption_result,
)

log = logging.getLogger("ome.scheduler")
JSON = "application/json"
SWEEP_S = 1.0
GC_THRESHOLD = 50_000


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=JSON)


def _refuse(status: int, reason: str) -> Reply:
    return status, dumps({"Error": reason})


def _route(run: Callable[[Any, Any], Awaitable[Reply]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status, body = await run(request.scope, request.receive)
        return _json(body, status)

    return endpoint


def resources(engine: Extender) -> list[Resource]:
    return [
        Resource("nodes", "/api/v1/nodes", engine.replace_nodes, engine.node_event),
        Resource("pods", "/api/v1/pods", engine.replace_pods, engine.pod_event),
        Resource("pdbs", "/apis/policy/v1/poddisruptionbudgets", engine.replace_pdbs, engine.pdb_event, optional=True),
    ]


def create_app(engine: Extender, kube: KubeApi, *, watch: bool = True) -> FastAPI:
    """The extender app. With watch=False the caller feeds `engine` itself (tests, benchmarks)."""
    metrics = Metrics(engine.stats)
    stop = threading.Event()
    warming = threading.Event()
    planner = Planner(engine)
    reflectors: list[Reflector] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # A verb allocates a parsed JSON tree per call, acyclic and freed by reference counting;
        # collecting every 700 allocations only burns time. Cycles are rare here.
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        if watch:
            reflectors.extend(start_reflectors(kube, resources(engine), stop,
                                               lambda r, e: metrics.watch_errors.labels(r, e).inc()))
        sweeper = asyncio.create_task(_sweep())
        try:
            yield
        finally:
            stop.set()
            sweeper.cancel()
            kube.close()
            aclose = getattr(kube, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _sweep() -> None:
        warmed = -1  # the arrays generation the cache was last warmed for
        frozen = False
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                if engine.ready and not frozen:
                    # The cache's objects live as long as the process: keep them out of the
                    # collector's full passes, which would otherwise stall a verb for tens of ms.
                    gc.collect()
                    gc.freeze()
                    frozen = True
                engine.expire()
                engine.refresh_target()
                if engine.ready:
                    planner.poke()  # ome-plan: solve the plan for the current target, off the request path
                # Keep the score cache fresh off the critical path: after a rebuild every shape is
                # scored anew; otherwise each pass re-scores only the nodes that changed since.
                if engine.ready and not warming.is_set():
                    warming.set()
                    threading.Thread(target=_warm, args=(engine.generation != warmed,), name="ome-warm-up",
                                     daemon=True).start()
                    warmed = engine.generation
            except Exception:  # noqa: BLE001 - keep sweeping
                log.exception("sweep failed")

    def _warm(rebuilt: bool) -> None:
        try:
            started = time.perf_counter()
            shapes = engine.warm(stop)
            if rebuilt:
                log.info("score cache warmed for %d shapes in %.2fs", shapes, time.perf_counter() - started)
        finally:
            warming.clear()

    app = VerbApp(title="OME kube-scheduler extender", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.reflectors = reflectors
    limit = engine.settings.max_body_bytes

    def verb(name: str, handle: Callable[[Any], Awaitable[Reply]]) -> Callable[[Any, Any], Awaitable[Reply]]:
        latency, errors = metrics.latency.labels(name), metrics.errors

        async def run(scope: Any, receive: Any) -> Reply:
            started = time.perf_counter()
            try:
                if not engine.ready:
                    errors.labels(name, "not_ready").inc()
                    return _refuse(503, "the extender's node and pod cache is still loading")
                try:
                    body = await read_body(scope, receive, limit)
                except BodyTooLarge as exc:
                    raise BadRequest(f"body of {exc.size} bytes is larger than {limit}", status=413) from None
                return await handle(loads(body))
            except BadRequest as exc:
                errors.labels(name, "bad_request").inc()
                log.info("%s: %d %s", name, exc.status, exc.reason)
                return _refuse(exc.status, exc.reason)
            except Refused as exc:
                errors.labels(name, "refused").inc()
                log.info("%s: %d %s", name, exc.status, exc.reason)
                return _refuse(exc.status, exc.reason)
            finally:
                latency.observe(time.perf_counter() - started)

        return run

    async def do_filter(obj: Any) -> Reply:
        args = extender_args(obj, "filter", engine.index, engine.request_pod_info)
        out = engine.filter(args.pod, args.names, args.rows)
        metrics.decisions.labels("filter", "placed" if out.chosen else "unschedulable").inc()
        return 200, filter_result(out.nodes, out.failed, out.unresolvable, args.node_items)

    priorities = HostPriorityEncoder()  # used from the event loop's thread only

    async def do_prioritize(obj: Any) -> Reply:
        args = extender_args(obj, "prioritize", engine.index, engine.request_pod_info)
        scores, rows, nodes = engine.prioritize_rows(args.pod, args.names, args.rows)
        metrics.decisions.labels("prioritize", "scored").inc()
        return 200, priorities.encode(args.names, scores, rows, nodes)

    async def do_bind(obj: Any) -> Reply:
        args = binding_args(obj)
        plan = engine.begin_bind(args.pod_uid, args.pod_namespace, args.pod_name, args.node)
        if plan is None:
            try:
                raw = await kube.get_pod(args.pod_namespace, args.pod_name)
            except KubeError as exc:
                metrics.errors.labels("bind", "apiserver").inc()
                return 200, binding_result(f"cannot read pod {args.pod_namespace}/{args.pod_name}: {exc}")
            if raw is None:
                raise BadRequest(f"pod {args.pod_namespace}/{args.pod_name} does not exist", status=404)
            try:
                info = pod_from_v1(raw)
            except InvalidInput as exc:
                raise BadRequest(f"pod {args.pod_namespace}/{args.pod_name}: {exc}", status=422) from None
            engine.pod_event("MODIFIED", raw)
            plan = engine.begin_bind(args.pod_uid, args.pod_namespace, args.pod_name, args.node, info)
            if plan is None:
                raise BadRequest(f"pod {args.pod_namespace}/{args.pod_name} is not known", status=404)
        if plan.already_bound:
            metrics.decisions.labels("bind", "already_bound").inc()
            return 200, binding_result()
        try:
            await kube.bind(args.pod_namespace, args.pod_name, args.pod_uid, args.node, plan.annotations)
        except KubeError as exc:
            definite = 400 <= exc.status < 500
            if exc.status == 409 and f"already assigned to node \"{args.node}\"" in exc.message:
                engine.end_bind(args.pod_uid, args.node, True)  # a retried bind that had succeeded
                return 200, binding_result()
            engine.end_bind(args.pod_uid, args.node, False if definite else None)
            metrics.decisions.labels("bind", "failed").inc()
            metrics.errors.labels("bind", "apiserver").inc()
            return 200, binding_result(f"binding {args.pod_namespace}/{args.pod_name} to {args.node}: {exc}")
        engine.end_bind(args.pod_uid, args.node, True)
        metrics.decisions.labels("bind", "bound").inc()
        return 200, binding_result()

    async def do_preempt(obj: Any) -> Reply:
        args = preemption_args(obj)
        victims = engine.preempt(args.pod, args.victims)
        metrics.decisions.labels("preempt", "candidates" if victims else "none").inc()
        return 200, preemption_result(victims)

    # The verbs are answered by VerbApp ahead of FastAPI's middleware and router; the routes
    # below only give a GET of a verb its 405 (and serve a POST that reaches them some other way).
    for name, handle in (("filter", do_filter), ("prioritize", do_prioritize), ("bind", do_bind),
                         ("preempt", do_preempt)):
        app.verbs[f"/{name}"] = run = verb(name, handle)
        app.add_route(f"/{name}", _route(run), methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        if not engine.ready:
            return Response("cache loading\n", status_code=503, media_type="text/plain")
        return Response("ok\n", media_type="text/plain")

    @app.get("/metrics")
    async def metrics_() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/debug/state")
    async def state() -> Response:
        return _json(dumps(engine.snapshot()))

    return app
