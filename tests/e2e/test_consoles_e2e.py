"""Consoles in their own processes (`ansim consoles`), with real processes: an API that serves no
console WebSocket, two console processes, a dispatcher, real WebSocket consoles, SOS through
`POST /v1/alerts`. One process killed and started again loses nothing (the consoles resume from
their cursor); consoles on two processes both get everything in their scope; `ansim serve`
starts one and points the console page at it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.e2e.harness import (
    Console,
    free_ports,
    settled,
    spawn,
    stack_env,
    start_api,
    start_consoles,
    start_dispatcher,
    wait_listening,
)

#: Chosen free when the module's stack starts.
PORTS: dict[str, int] = {}

A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
IN_A = (37.52, 126.92)
IN_B = (37.52, 126.97)


@pytest.fixture(scope="module")
async def stack(migrated, settings):
    PORTS.update(zip(("api", "c1", "c2"), free_ports(3), strict=True))
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="600",
        ANSIM_API_CONSOLE_STREAM="false",  # intake only: the consoles are elsewhere
        ANSIM_CONSOLE_PING_S="1",
    )
    procs = {
        "api": await asyncio.to_thread(start_api, PORTS["api"], env),
        "c1": await asyncio.to_thread(start_consoles, PORTS["c1"], env),
        "c2": await asyncio.to_thread(start_consoles, PORTS["c2"], env),
        "d1": start_dispatcher("consoles-e2e-d1", env),
    }
    try:
        yield {"procs": procs, "env": env}
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture
async def world(make_district, make_staff):
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    return {
        "a": a,
        "b": b,
        "disp_a": await make_staff("dispatcher", district_ids=(a,), name="Kim A"),
        "disp_b": await make_staff("dispatcher", district_ids=(b,), name="Lee B"),
        "super": await make_staff("dispatcher", city_wide=True, name="Park"),
        "super2": await make_staff("dispatcher", city_wide=True, name="Choi"),
    }


async def post_sos(http: httpx.AsyncClient, member: Any, at: tuple[float, float]) -> str:
    r = await http.post(
        f"http://127.0.0.1:{PORTS['api']}/v1/alerts",
        headers={"Authorization": f"Bearer {member.token}"},
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": at[0], "lon": at[1], "accuracy_m": 10},
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


def reported_ids(console: Console) -> list[str]:
    return [m["incident"]["id"] for m in console.incidents("reported")]


async def wait_all(console: Console, ids: set[str], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ids <= set(reported_ids(console)):
            break
        await asyncio.sleep(0.05)
    missing = ids - set(reported_ids(console))
    assert not missing, f"{len(missing)} of {len(ids)} never reached the console"


class ResumingConsole:
    """A console that, like the web console, reconnects with its last cursor when its socket
    drops (here: its console process killed)."""

    def __init__(self, port: int, token: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/v1/console/stream?token={token}&batch=true"
        self.messages: list[dict[str, Any]] = []
        self.cursor: str | None = None
        self.connects = 0
        self.drops = 0
        self.live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ResumingConsole:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.live.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            url = self.url + (f"&cursor={self.cursor}" if self.cursor else "")
            try:
                async with websockets.connect(url, open_timeout=2) as ws:
                    self.connects += 1
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        for m in frame["messages"] if frame["type"] == "batch" else [frame]:
                            self.messages.append(m)
                            self.cursor = m.get("cursor") or self.cursor
                            if m["type"] != "hello":
                                self.live.set()
            except (
                OSError,
                websockets.ConnectionClosed,
                websockets.InvalidHandshake,
                TimeoutError,
            ):
                pass
            self.drops += 1
            await asyncio.sleep(0.2)

    def reported(self) -> list[str]:
        return [
            m["incident"]["id"]
            for m in self.messages
            if m["type"] == "incident" and m["event"] == "reported"
        ]


async def test_consoles_on_two_processes_each_get_every_sos_of_their_scope(
    stack, world, make_member, pool
):
    # The API is intake only: it serves no console WebSocket.
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(
            f"ws://127.0.0.1:{PORTS['api']}/v1/console/stream?token={world['super'].token}"
        ):
            pass
    members = [await make_member() for _ in range(10)]
    async with (
        Console(PORTS["c1"], world["super"].token) as super_1,
        Console(PORTS["c2"], world["super2"].token) as super_2,
        Console(PORTS["c2"], world["disp_a"].token) as con_a,
        Console(PORTS["c1"], world["disp_b"].token) as con_b,
        httpx.AsyncClient(timeout=10) as http,
    ):
        in_a, in_b = set(), set()
        for i, member in enumerate(members):
            if i % 2:
                in_b.add(await post_sos(http, member, IN_B))
            else:
                in_a.add(await post_sos(http, member, IN_A))
        for console in (super_1, super_2):
            await wait_all(console, in_a | in_b, 10)
        await wait_all(con_a, in_a, 10)
        await wait_all(con_b, in_b, 10)
        # District scoping on each process: nothing of the other district, each once.
        assert sorted(reported_ids(con_a)) == sorted(in_a)
        assert sorted(reported_ids(con_b)) == sorted(in_b)
        for console in (super_1, super_2):
            assert sorted(reported_ids(console)) == sorted(in_a | in_b)
    # Promise 6 on both processes: each read logged, naming whoever was sent her location.
    for incident_id in in_a | in_b:
        district_reader = world["disp_a"] if incident_id in in_a else world["disp_b"]
        expected = {world["super"].id, world["super2"].id, district_reader.id}
        readers = await settled(
            pool,
            "SELECT count(DISTINCT s) = $2 FROM location_access, unnest(staff_ids) s"
            " WHERE incident_id = $1 AND reason = 'console_stream' AND s = ANY($3::uuid[])",
            uuid.UUID(incident_id),
            len(expected),
            list(expected),
        )
        assert readers, f"reads of {incident_id} not logged for every reader"


async def test_a_console_process_killed_and_started_again_loses_no_sos(
    stack, world, make_member, pool
):
    procs, env = stack["procs"], stack["env"]
    members = [await make_member() for _ in range(30)]
    sent: list[str] = []
    async with (
        ResumingConsole(PORTS["c1"], world["super"].token) as resuming,
        Console(PORTS["c2"], world["super2"].token) as steady,
        httpx.AsyncClient(timeout=10) as http,
    ):

        async def send(batch: list[Any]) -> None:
            for member in batch:
                sent.append(await post_sos(http, member, IN_A))
                await asyncio.sleep(0.05)

        await send(members[:10])
        procs["c1"].kill()  # SIGKILL: every socket on it drops without a goodbye
        await asyncio.to_thread(procs["c1"].popen.wait, 10)
        await send(members[10:20])  # while nothing serves that console
        procs["c1"] = await asyncio.to_thread(start_consoles, PORTS["c1"], env)
        await send(members[20:])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if set(sent) <= set(resuming.reported()):
                break
            await asyncio.sleep(0.05)
        await wait_all(steady, set(sent), 10)
    got = Counter(resuming.reported())
    assert set(got) == set(sent), f"lost: {set(sent) - set(got)}"
    # Replayed from the cursor, not a new snapshot: each once, one snapshot in all.
    assert max(got.values()) == 1
    assert sum(1 for m in resuming.messages if m["type"] == "snapshot") == 1
    assert resuming.connects >= 2 and resuming.drops >= 1
    assert Counter(reported_ids(steady)) == Counter(sent)


async def test_serve_starts_a_console_process_and_the_page_connects_to_it(
    migrated, settings, make_district, make_staff
):
    api_port, console_port = free_ports(2)
    env = stack_env(redis_url=settings.redis_url, gateway_port=None)
    env.pop("ANSIM_CONSOLE_STREAM_URL", None)
    serve = spawn(
        f"serve-{api_port}",
        ["-m", "app.cli", "serve", "--port", str(api_port), "--consoles-port", str(console_port)],
        env,
    )
    try:
        await asyncio.to_thread(wait_listening, api_port)
        await asyncio.to_thread(wait_listening, console_port)
        url = f"ws://127.0.0.1:{console_port}/v1/console/stream"
        async with httpx.AsyncClient(timeout=5) as http:
            page = (await http.get(f"http://127.0.0.1:{api_port}/console")).text
        assert f'<meta name="ansim-console-stream" content="{url}">' in page
        staff = await make_staff("dispatcher", city_wide=True)
        async with Console(console_port, staff.token) as console:
            await console.wait_for(lambda m: m["type"] == "snapshot", 5)
    finally:
        await asyncio.to_thread(serve.stop, 30)  # SIGTERM: it stops its children too
    # Its console process went with it.
    with pytest.raises(RuntimeError, match="nothing listening"):
        await asyncio.to_thread(wait_listening, console_port, 2)
