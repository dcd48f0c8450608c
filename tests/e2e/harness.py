"""Real processes for end-to-end tests and the latency probe: uvicorn API, dispatchers, a
gateway receiver (a real HTTP server that verifies our HMAC signatures), a private Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.dispatch.gateways import verify

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_KEY = "e2e-gateway-key"


#: Coverage at test speed: a sweep every 0.2 s, consoles refreshed every 0.5 s and forgotten 2 s
#: after their process stops refreshing them.
FAST_COVERAGE = {
    "ANSIM_COVERAGE_POLL_S": "0.2",
    "ANSIM_CONSOLE_PRESENCE_REFRESH_S": "0.5",
    "ANSIM_CONSOLE_PRESENCE_TTL_S": "2",
}


def free_port() -> int:
    """A TCP port free on loopback now, so two runs of the suite on one machine do not collide.
    Choose it just before use (in the fixture or test that starts the server), not at import."""
    (port,) = free_ports(1)
    return port


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on loopback now (each held until all are chosen, so the kernel
    cannot hand the same one out twice)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def wait_listening(port: int, within: float = 30) -> None:
    """Until something accepts TCP connections on ``port`` (a process that prints no ready line)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {within} s")


def stack_env(*, redis_url: str, gateway_port: int | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "ANSIM_ENVIRONMENT": "test",
            "ANSIM_ACK_DEADLINE_S": "2",
            "ANSIM_ESCALATION_LADDER": '[{"after_s": 2}]',
            "ANSIM_ESCALATION_REPEAT_S": "0",
            "ANSIM_DEADLINE_POLL_S": "0.2",
            "ANSIM_DISPATCH_CLAIM_IDLE_S": "1",
            "ANSIM_DISPATCH_MAX_DELIVERIES": "3",
            "ANSIM_RELAY_SWEEP_INTERVAL_S": "0.2",
            "ANSIM_VOLUNTEERS_NEEDED": "1",
            "ANSIM_GATEWAY_HMAC_KEY": GATEWAY_KEY,
            "ANSIM_GATEWAY_BACKOFF_S": "0.05",
            # The PostgreSQL server is shared: keep each process's pool small.
            "ANSIM_DB_POOL_SIZE": "6",
            "ANSIM_DB_MAX_OVERFLOW": "2",
            "ANSIM_DB_HOT_POOL_SIZE": "4",
        }
    )
    if gateway_port is not None:
        env["ANSIM_PUSH_GATEWAY_URL"] = f"http://127.0.0.1:{gateway_port}/push"
        env["ANSIM_SMS_GATEWAY_URL"] = f"http://127.0.0.1:{gateway_port}/sms"
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def log_path(name: str) -> Path:
    """Where a spawned process writes its output: named by this run's pid too, so two suites on
    one machine do not write into each other's logs."""
    return Path(f"/tmp/ansim-e2e-{os.getpid()}-{name}.log")


def spawn(name: str, args: list[str], env: dict[str, str]) -> Proc:
    log = log_path(name).open("wb")
    popen = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return Proc(name, popen)


def start_api(port: int, env: dict[str, str]) -> Proc:
    proc = spawn(
        f"api-{port}",
        [
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"API on {port} exited; see {log_path(f'api-{port}')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"API on {port} did not start")


def start_consoles(port: int, env: dict[str, str], *, name: str | None = None) -> Proc:
    """``ansim consoles`` on ``port`` (the console WebSocket apart from the API)."""
    name = name or f"consoles-{port}"
    args = ["-m", "app.cli", "consoles", "--port", str(port)]
    proc = spawn(name, args, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"consoles on {port} exited; see {log_path(name)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"consoles on {port} did not start")


def start_dispatcher(name: str, env: dict[str, str]) -> Proc:
    return spawn(name, ["-m", "app.dispatch.cli", "dispatcher", "--name", name], env)


def start_redis(port: int) -> Proc:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise RuntimeError(
            "this test starts its own Redis and needs redis-server and redis-cli"
            " (Debian: apt-get install redis-server; scripts/setup.sh installs it)"
        )
    popen = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            return Proc(f"redis-{port}", popen)
        time.sleep(0.05)
    raise RuntimeError("redis did not start")


async def settled(pool: Any, sql: str, *args: Any, within: float = 5.0) -> Any:
    """The first truthy value of ``sql`` within ``within`` seconds (polled), else the last
    one: for rows another process writes a moment after what the test waits for."""
    deadline = time.monotonic() + within
    while True:
        value = await pool.fetchval(sql, *args)
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.05)


@dataclass
class GatewayReceiver:
    """A real local HTTP server standing in for the push and SMS providers."""

    port: int
    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        if not verify(GATEWAY_KEY, request.headers.get("x-ansim-signature", ""), body):
            self.rejected += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return JSONResponse({"error": "try again"}, status_code=503)
        msg = orjson.loads(body)
        msg["path"] = request.url.path
        msg["idempotency_key"] = request.headers.get("idempotency-key")
        self.received.append(msg)
        return JSONResponse({"ok": True})

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/push", self._handle, methods=["POST"]),
                Route("/sms", self._handle, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.02)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, port: int) -> AsyncIterator[GatewayReceiver]:
        receiver = cls(port)
        await receiver.start()
        try:
            yield receiver
        finally:
            await receiver.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)


class Console:
    """A real WebSocket console client collecting every message."""

    def __init__(
        self, port: int, token: str, cursor: str | None = None, *, batch: bool = True
    ) -> None:
        self.url = f"ws://127.0.0.1:{port}/v1/console/stream?token={token}"
        if cursor:
            self.url += f"&cursor={cursor}"
        if batch:  # as the web console asks
            self.url += "&batch=true"
        #: Every message, batches unpacked, in the order received.
        self.messages: list[dict[str, Any]] = []
        #: How many frames carried them, and the last one as sent.
        self.frames = 0
        self.last_frame: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> Console:
        import websockets

        self._ws = await websockets.connect(self.url)
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda m: m["type"] in ("snapshot",) or m["type"] == "hello", 5)
        return self

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = self.last_frame = orjson.loads(raw)
                self.frames += 1
                self.messages.extend(msg["messages"] if msg["type"] == "batch" else [msg])
        except Exception:
            pass
        finally:
            self.closed.set()

    async def __aexit__(self, *exc: object) -> None:
        await self._ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)

    def incidents(self, event: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["type"] == "incident" and (event is None or m["event"] == event)
        ]

    @property
    def cursor(self) -> str | None:
        with_cursor = [m["cursor"] for m in self.messages if m["type"] == "incident"]
        return with_cursor[-1] if with_cursor else None

    async def wait_for(self, pred: Any, within: float) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for m in self.messages:
                if pred(m):
                    return m
            await asyncio.sleep(0.02)
        raise AssertionError(f"no matching message in {within}s; got {self.messages[-5:]}")

    async def wait_count(self, pred: Any, n: int, within: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = [m for m in self.messages if pred(m)]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.02)
        found = [m for m in self.messages if pred(m)]
        raise AssertionError(f"{len(found)} of {n} messages in {within}s")
