"""The reflectors: list, watch with bookmarks, re-list on 410 Gone (status or ERROR event)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from ome.scheduler._informer import Reflector, Resource
from ome.scheduler._kube import Gone, KubeError


class ScriptedApi:
    """list() returns the next listing; watch() plays the next script of events then ends."""

    def __init__(self, listings: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]] | Exception],
                 stop: threading.Event) -> None:
        self.listings, self.watches, self.stop = listings, watches, stop
        self.watched_from: list[str] = []

    def list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        items = self.listings.pop(0)
        return items, f"list-{len(self.listings)}"

    def watch(self, path: str, resource_version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        if not self.watches:
            self.stop.set()
            return iter(())
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        return iter(script)


def obj(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


def run(api: ScriptedApi, stop: threading.Event) -> tuple[list[list[str]], list[tuple[str, str]]]:
    replaced: list[list[str]] = []
    events: list[tuple[str, str]] = []

    def replace(items: Sequence[Mapping[str, Any]]) -> None:
        replaced.append([i["metadata"]["name"] for i in items])

    def event(kind: str, o: Mapping[str, Any]) -> None:
        events.append((kind, o["metadata"]["name"]))

    r = Reflector(api, Resource("nodes", "/api/v1/nodes", replace, event), stop)
    r.run()
    return replaced, events


@pytest.mark.timeout(60)
def test_bookmarks_advance_the_version_and_410_relists() -> None:
    stop = threading.Event()
    api = ScriptedApi(
        listings=[[obj("a", "1")], [obj("a", "1"), obj("b", "9")], [obj("b", "9")]],
        watches=[
            [{"type": "ADDED", "object": obj("b", "5")}, {"type": "BOOKMARK", "object": obj("", "7")}],
            [{"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}],
            Gone(410, "gone"),
            KubeError(0, "connection reset"),
        ],
        stop=stop)
    replaced, events = run(api, stop)
    # the 410 ERROR event and the 410 status each led to a new list
    assert replaced == [["a"], ["a", "b"], ["b"]]
    assert events == [("ADDED", "b")]
    # from the list, from the bookmark, from the re-list (Gone), from the third list (reset:
    # resumed from the same version after a back-off), then the script ends.
    assert api.watched_from == ["list-2", "7", "list-1", "list-0", "list-0"]
