"""The four verbs served ahead of FastAPI's middleware and router.

kube-scheduler calls filter (and bind) once per pod on its critical path. Through FastAPI each
call crossed six middleware layers and the router before our handler, about a fifth of the
extender's CPU under load (py-spy, 1,213 nodes). The verbs read a body and answer JSON, so
`VerbApp` answers `POST /<verb>` straight from ASGI and hands every other request (healthz,
metrics, debug/state, a GET of a verb path, the lifespan) to FastAPI as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI

log = logging.getLogger("ome.scheduler")

Reply = tuple[int, bytes]
"""(HTTP status, JSON body)."""

Verb = Callable[[Any, Any], Awaitable[Reply]]
"""A verb's handler: (ASGI scope, receive) in, the reply out; it reads the body (read_body) and
answers every problem with the request itself. ClientGone: no one to reply to."""

_JSON = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def read_body(scope: Mapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                    limit: int) -> bytes:
    """The whole request body, refused (BodyTooLarge) as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge(int(value))
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client went away
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class VerbApp(FastAPI):
    """FastAPI with `verbs` (path -> handler) answered before the middleware stack. Each reply
    carries the handler's own time in a Server-Timing header (app;dur=ms)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verbs: dict[str, Verb] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handle = self.verbs.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handle is None:
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            status, body = await handle(scope, receive)
        except ClientGone:
            return
        except Exception:  # noqa: BLE001 - a handler bug must not take the server down
            log.exception("%s failed", scope["path"])
            status, body = 500, b'{"Error":"internal error in the OME extender (logged)"}'
        timing = f"app;dur={1000 * (time.perf_counter() - started):.3f}".encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            _JSON, (b"content-length", str(len(body)).encode()), (b"server-timing", timing)]})
        await send({"type": "http.response.body", "body": body})
