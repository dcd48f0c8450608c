"""Fault (c): PostgreSQL is restarted while SOS keep coming. A private cluster of our own (initdb
into a temp directory, its own port; the shared server is never touched) runs the whole stack.

While it is down the API answers 503 with Retry-After, never a 2xx for something it did not
commit (every 2xx incident id is in the database afterwards); the phone retries its SOS with the
same client_alert_id until it gets a 2xx; the stack recovers without restarting any of our
processes, and every SOS reaches the console once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command

from tests.conftest import alembic_config
from tests.e2e.harness import (
    Console,
    free_port,
    free_ports,
    stack_env,
    start_api,
    start_dispatcher,
    start_redis,
)
from tests.faults.common import (
    Phone,
    make_city_dispatcher,
    make_members,
    reported_ids,
    write_artifact,
)

#: Chosen free when the stack starts (two suites on one machine must not collide).
API_PORT, REDIS_PORT = 0, 0
RATE = 5.0
DOWN_S = 4.0


def pg_bin() -> Path:
    """The directory of the PostgreSQL server binaries (``initdb``, ``pg_ctl``): a missing one
    fails the test with the fix, it never skips it."""
    found = [Path(p).parent for p in (shutil.which("pg_ctl"), shutil.which("initdb")) if p]
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in found:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    pytest.fail(
        "this test runs a private PostgreSQL cluster and needs the server binaries initdb and"
        " pg_ctl (Debian: apt-get install postgresql; scripts/setup.sh installs them)",
        pytrace=False,
    )


class Cluster:
    def __init__(self, bin_dir: Path, database: str) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ansim-trust-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.log = self.root / "server.log"
        # initdb refuses to run as root: as root, the cluster belongs to the postgres user.
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        self.database = database
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *args: str, timeout: float = 60) -> None:
        runuser = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*runuser, *args], check=True, capture_output=True, timeout=timeout)

    def initdb(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c max_connections=100"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
async def cluster(settings):
    # The private cluster's database is named like the configured one (it is on its own port,
    # so it never touches the shared server's).
    c = Cluster(pg_bin(), settings.asyncpg_dsn.rsplit("/", 1)[1].split("?")[0])
    try:
        await asyncio.to_thread(c.initdb)
        await asyncio.to_thread(c.start)
        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{c.port}/postgres")
        await admin.execute(f'CREATE DATABASE "{c.database}"')
        await admin.close()
        url = c.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        yield c
    finally:
        await asyncio.to_thread(c.remove)


@pytest.fixture
async def stack(cluster):
    global API_PORT, REDIS_PORT
    API_PORT, REDIS_PORT = free_ports(2)
    procs = {"redis": await asyncio.to_thread(start_redis, REDIS_PORT)}
    env = stack_env(
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        gateway_port=None,
        DATABASE_URL=cluster.dsn,
        ANSIM_ACK_DEADLINE_S="600",
    )
    try:
        procs["api"] = await asyncio.to_thread(start_api, API_PORT, env)
        procs["d1"] = start_dispatcher("faults-pg-d1", env)
        yield procs
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs.values()))


async def test_postgres_restart_under_load_503_while_down_then_everything_delivered(cluster, stack):
    db = await asyncpg.connect(cluster.dsn)
    try:
        console_token = await make_city_dispatcher(db)
        total = int(10 * RATE)
        phones = [Phone(t) for t in await make_members(db, total)]
    finally:
        await db.close()
    pids = {name: p.popen.pid for name, p in stack.items()}
    base = f"http://127.0.0.1:{API_PORT}"
    responses: list[httpx.Response] = []
    refused: list[str] = []

    async def sos_until_accepted(http: httpx.AsyncClient, phone: Phone) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            r = await phone.send(http, base)
            if r is None:
                refused.append(phone.attempts[-1])  # type: ignore[arg-type]
            else:
                responses.append(r)
                if r.status_code in (200, 201):
                    return
            await asyncio.sleep(0.5)  # the app honours Retry-After; the test keeps it short

    async def load(http: httpx.AsyncClient) -> None:
        start = time.monotonic()
        tasks = []
        for i, phone in enumerate(phones):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(sos_until_accepted(http, phone)))
        await asyncio.gather(*tasks)

    async def restart() -> float:
        await asyncio.sleep(3)
        await asyncio.to_thread(cluster.stop, "fast")
        began = time.monotonic()
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(cluster.start)
        return time.monotonic() - began

    async with httpx.AsyncClient(timeout=20) as http, Console(API_PORT, console_token) as console:
        _, down_s = await asyncio.gather(load(http), restart())
        accepted = {p.incident_id for p in phones if p.incident_id}
        try:
            await console.wait_count(
                lambda m: m["type"] == "incident" and m["event"] == "reported", len(accepted), 30
            )
        finally:
            delivered = reported_ids(console.messages)

    codes = [r.status_code for r in responses]
    unavailable = [r for r in responses if r.status_code == 503]
    db = await asyncpg.connect(cluster.dsn)
    try:
        stored = {str(r["id"]) for r in await db.fetch("SELECT id FROM incident")}
        per_member = await db.fetch("SELECT count(*) AS n FROM incident GROUP BY member_id")
    finally:
        await db.close()
    write_artifact(
        "postgres_restart",
        {
            "faults_injected": 1,
            "fault": f"PostgreSQL stopped (fast) for {down_s:.1f} s under load, then started",
            "rate_per_s": RATE,
            "sent": len(phones),
            "requests": len(responses) + len(refused),
            "answered_503_with_retry_after": sum(
                1 for r in unavailable if r.headers.get("retry-after")
            ),
            "other_non_2xx": len([c for c in codes if c not in (200, 201, 503)]) + len(refused),
            "accepted": len(accepted),
            "every_2xx_committed": sorted(accepted - stored) == [],
            "incidents": len(stored),
            "delivered_to_console": len(set(delivered) & accepted),
            "console_duplicates": len(delivered) - len(set(delivered)),
            "processes_restarted": sum(
                1 for name, p in stack.items() if name != "redis" and p.popen.poll() is not None
            ),
        },
    )
    assert set(codes) <= {200, 201, 503}, codes
    assert refused == []
    assert unavailable, "the outage was not observed"
    assert all(r.headers.get("retry-after") for r in unavailable)
    assert all(r.json()["error"] == "ServiceUnavailable" for r in unavailable)
    assert len(accepted) == len(phones)
    assert accepted <= stored  # never a 2xx for something not committed
    assert len(stored) == len(phones) and all(r["n"] == 1 for r in per_member)
    assert set(delivered) == accepted
    assert {name: p.popen.pid for name, p in stack.items()} == pids
    assert all(p.popen.poll() is None for name, p in stack.items())
