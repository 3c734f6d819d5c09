"""List + watch reflectors that keep the Extender's cache: nodes, pods, PodDisruptionBudgets.

Each resource runs in its own daemon thread: list (paged, a consistent read), hand the items
to the Extender, then watch from the list's resourceVersion with bookmarks (so a reconnect
resumes from a recent version instead of re-listing). A 410 Gone, as an HTTP status or as an
ERROR event, means the version was compacted away: list again and replace everything. Other
errors back off (0.5 s doubling to 10 s) and resume the watch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._kube import Gone, KubeApi, KubeError

log = logging.getLogger("ome.scheduler.informer")

WATCH_TIMEOUT_S = 300


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    path: str
    replace: Callable[[Sequence[Mapping[str, Any]]], None]
    event: Callable[[str, Mapping[str, Any]], None]
    optional: bool = False  # a 403/404 on list means "none" (e.g. no RBAC for PDBs)


class Reflector(threading.Thread):
    def __init__(self, api: KubeApi, resource: Resource, stop: threading.Event,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        super().__init__(name=f"ome-reflector-{resource.name}", daemon=True)
        self.api = api
        self.resource = resource
        self.stop_event = stop
        self.on_error = on_error or (lambda _r, _w: None)
        self.relists = 0
        self.events = 0

    def run(self) -> None:
        backoff = 0.5
        version = ""
        while not self.stop_event.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                backoff = 0.5
            except Gone:
                log.info("%s: resourceVersion %s gone, listing again", self.resource.name, version)
                version = ""
            except Exception as exc:  # noqa: BLE001 - a reflector must survive anything
                if self.stop_event.is_set():
                    return
                log.warning("%s: %s; retrying in %.1fs", self.resource.name, exc, backoff)
                self.on_error(self.resource.name, type(exc).__name__)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        try:
            items, version = self.api.list(self.resource.path)
        except KubeError as exc:
            if self.resource.optional and exc.status in (403, 404):
                log.warning("%s: cannot list (%s); carrying on without them", self.resource.name, exc)
                self.resource.replace([])
                self.stop_event.wait(60)
                return ""
            raise
        self.resource.replace(items)
        self.relists += 1
        return version

    def _watch(self, version: str) -> str:
        """Watch until the server ends the stream; return the last version seen."""
        if not version:
            return ""
        for event in self.api.watch(self.resource.path, version, WATCH_TIMEOUT_S):
            if self.stop_event.is_set():
                break
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(410, str(obj.get("message", "")))
                raise KubeError(int(obj.get("code") or 0), str(obj.get("message", "watch error")))
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            self.events += 1
            self.resource.event(str(kind), obj)
        return version


def start_reflectors(api: KubeApi, resources: Sequence[Resource], stop: threading.Event,
                     on_error: Callable[[str, str], None] | None = None) -> list[Reflector]:
    threads = [Reflector(api, r, stop, on_error) for r in resources]
    for t in threads:
        t.start()
    return threads
