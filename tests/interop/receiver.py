"""A real local HTTP server standing in for an agency's CAD: it checks every delivery's
signature (with the agency's secret, as docs/interop.md tells integrators to) and keeps what
it was sent, in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.dispatch.gateways import verify


@dataclass
class Delivery:
    path: str
    incident_id: str
    change: str
    sequence: int
    idempotency_key: str
    signature: str
    content_type: str
    body: bytes


@dataclass
class AgencyReceiver:
    port: int
    secrets: dict[str, str]
    received: list[Delivery] = field(default_factory=list)
    rejected: int = 0
    #: Idempotency keys it answers 400 (a final refusal), and 503 (try again) once each.
    refuse: set[str] = field(default_factory=set)
    unavailable: set[str] = field(default_factory=set)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        secret = self.secrets[request.url.path]
        signature = request.headers.get("x-ansim-signature", "")
        if not verify(secret, signature, body):  # includes the 5-minute replay window
            self.rejected += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        h = request.headers
        if h["idempotency-key"] in self.refuse:
            return JSONResponse({"error": "not for us"}, status_code=400)
        if h["idempotency-key"] in self.unavailable:
            self.unavailable.discard(h["idempotency-key"])
            return JSONResponse({"error": "busy"}, status_code=503)
        self.received.append(
            Delivery(
                path=request.url.path,
                incident_id=h["x-ansim-incident"],
                change=h["x-ansim-change"],
                sequence=int(h["x-ansim-sequence"]),
                idempotency_key=h["idempotency-key"],
                signature=signature,
                content_type=h["content-type"],
                body=body,
            )
        )
        return JSONResponse({"ok": True})

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.received if d.path == path]

    async def start(self) -> None:
        routes = [Route(path, self._handle, methods=["POST"]) for path in self.secrets]
        config = uvicorn.Config(
            Starlette(routes=routes), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._task, 10)
