from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ome.scheduler import Extender, ExtenderSettings, FakeKube, create_app

from .builders import make_node
from .test_engine import TARGET


class TestClient:
    """A synchronous client over httpx's ASGI transport (no sockets, no lifespan: the tests feed
    the engine themselves). starlette's TestClient warns about httpx, and warnings are errors."""

    __test__ = False

    def __init__(self, app: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://extender")

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.post(path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.get(path, **kwargs))

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def build(nodes: list[dict[str, Any]] | None = None, ready: bool = True, **settings: Any) -> tuple[Extender, FakeKube, TestClient]:
    e = Extender(ExtenderSettings(**settings), target=TARGET)
    kube = FakeKube(on_pod=e.pod_event)
    if ready:
        e.replace_nodes(nodes if nodes is not None else [make_node(f"n{i}", "A100", 4) for i in range(4)])
        e.replace_pods([])
    return e, kube, TestClient(create_app(e, kube, watch=False))


@pytest.fixture()
def app() -> Iterator[tuple[Extender, FakeKube, TestClient]]:
    e, kube, client = build()
    with client:
        yield e, kube, client
