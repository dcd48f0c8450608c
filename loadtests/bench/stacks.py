"""The processes under test: our API and dispatchers, or the ceiling's, started as their own
``run.sh`` / ``ansim serve`` would, and stopped by PID."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtests.bench import HOST, ROOT
from loadtests.bench.database import sh
from loadtests.paths import CEILING


@dataclass
class Stack:
    name: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logdir: Path = Path("/tmp")

    def spawn(self, key: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        log = open(self.logdir / f"{self.name}-{key}.log", "wb")  # noqa: SIM115
        self.procs[key] = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def pids(self, prefix: str) -> list[int]:
        out = []
        for key, p in self.procs.items():
            if key.startswith(prefix) and p.poll() is None:
                out.append(p.pid)
                with contextlib.suppress(psutil.Error):
                    out.extend(c.pid for c in psutil.Process(p.pid).children(recursive=True))
        return out

    def stop(self, timeout: float = 10) -> None:
        children = []
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(psutil.Error):
                    children.extend(psutil.Process(p.pid).children(recursive=True))
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for c in children:  # uvicorn's worker processes, if their supervisor was killed
            with contextlib.suppress(psutil.Error):
                c.kill()
        self.procs.clear()

    def check_alive(self) -> None:
        for key, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{self.name} {key} exited; see {self.logdir}")


def wait_http(urls: list[str], timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(pending[0], timeout=1).status_code == 200:
                pending.pop(0)
                continue
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"not up: {pending}")


def console_ports(args: argparse.Namespace) -> list[int]:
    """Where our consoles connect: the console processes (``ansim consoles``, one port each,
    free on loopback when the run starts), or the API itself with ``--console-procs 0``."""
    if not hasattr(args, "console_port_list"):
        with contextlib.ExitStack() as held:
            ports = []
            for _ in range(args.console_procs):
                sock = held.enter_context(socket.socket())
                sock.bind((HOST, 0))
                ports.append(int(sock.getsockname()[1]))
        args.console_port_list = ports
    return list(args.console_port_list) or [args.port]


def _uvicorn(app: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--factory", "--host", HOST, "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        # As `ansim serve` (uvicorn's default WebSocket implementation, sans-I/O websockets):
        # console messages are small and go to many sockets; deflate per socket cost more
        # CPU than everything else in the fan-out.
        "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning",
        "--backlog", "2048",
    ]  # fmt: skip


def start_ours(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> Stack:
    stack = Stack("ansim", logdir=logdir)
    urls = [f"http://{HOST}:{args.port}/healthz"]
    if args.console_procs:
        # As deployed: the API is intake only, the consoles have processes of their own.
        env = {**env, "ANSIM_API_CONSOLE_STREAM": "false"}
        for i, port in enumerate(console_ports(args)):
            stack.spawn(
                f"consoles{i}", _uvicorn("app.consoles.app:create_console_app", port, 1), env, ROOT
            )
            urls.append(f"http://{HOST}:{port}/healthz")
    stack.spawn("api", _uvicorn("app.main:create_app", args.port, args.api_workers), env, ROOT)
    for i in range(args.dispatchers):
        stack.spawn(
            f"dispatcher{i}",
            [sys.executable, "-m", "app.dispatch.cli", "dispatcher", "--name", f"bench-{i}"],
            env,
            ROOT,
        )
    try:
        wait_http(urls)
        time.sleep(0.5 * args.api_workers)  # every worker has finished its lifespan startup
        stack.check_alive()
    except Exception:
        stack.stop()
        raise
    return stack


def start_ceiling(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> Stack:
    """Exactly the processes run.sh starts (same uvicorn options)."""
    dsn = env["CEILING_DSN"]
    if subprocess.run(
        ["psql", dsn, "-Atc", "select count(*) from safe_places"], capture_output=True
    ).returncode:
        admin = dsn.rsplit("/", 1)[0] + "/postgres"
        sh(["psql", admin, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(CEILING / "setup.sql")])
    sh(["psql", dsn, "-qc", "truncate incidents"])
    stack = Stack("ceiling", logdir=logdir)
    common = ["--host", HOST, "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    stack.spawn(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api:app",
            *common,
            "--port",
            env["CEILING_API_PORT"],
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],
        env,
        CEILING,
    )
    stack.spawn(
        "dispatcher",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "dispatcher:app",
            *common,
            "--port",
            env["CEILING_DISPATCH_PORT"],
            "--ws",
            "websockets",
            "--log-level",
            "warning",
        ],
        env,
        CEILING,
    )
    try:
        wait_http(
            [
                f"http://{HOST}:{env['CEILING_API_PORT']}/health",
                f"http://{HOST}:{env['CEILING_DISPATCH_PORT']}/health",
            ]
        )
    except Exception:
        stack.stop()
        raise
    return stack
