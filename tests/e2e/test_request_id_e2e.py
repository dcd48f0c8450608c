"""With ``ANSIM_LOG_FORMAT=json``, real processes: every log line of the API and of a dispatcher
is one JSON object, and the request id of an SOS is on the API's HTTP line, on the dispatcher's
line when it routes the incident, and in the console message. No position, phone number or name
in those logs (tests/security/leaks.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.api.test_alerts import GANGNAM, HERE, sos
from tests.e2e.harness import Console, free_port, log_path, stack_env, start_api, start_dispatcher
from tests.security.leaks import phones_in, positions_in, traces_of

GUARDIAN_PHONE = "+821055507788"


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_bytes().splitlines():
        if raw.strip():
            line = orjson.loads(raw)  # every line is one JSON object
            assert isinstance(line, dict) and {"time", "level", "logger", "message"} <= set(line)
            out.append(line)
    return out


async def _lines_with(path: Path, request_id: str, within: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        lines = [line for line in _lines(path) if line.get("request_id") == request_id]
        if lines or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.1)


async def test_an_sos_request_id_follows_it_from_http_to_dispatcher_to_console(
    migrated, settings, pool, make_district, make_member, make_staff
):
    api_port = free_port()
    name = f"reqid-{api_port}"
    env = stack_env(redis_url=settings.redis_url, gateway_port=None, ANSIM_LOG_FORMAT="json")
    gangnam = await make_district(*GANGNAM)
    console_staff = await make_staff("dispatcher", district_ids=(gangnam,), name="Kim Minji")
    # Her guardians are to be texted: the intake leaves this SOS to a dispatcher.
    member = await make_member(name="Seo Yeonhee")
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', $3)",
        uuid.uuid4(),
        member.id,
        GUARDIAN_PHONE,
    )
    alone = await make_member(name="Han Jiwoo")  # routed at intake
    api = await asyncio.to_thread(start_api, api_port, env)
    dispatcher = start_dispatcher(name, env)
    api_log = log_path(f"api-{api_port}")
    dispatcher_log = log_path(name)
    try:
        async with (
            Console(api_port, console_staff.token) as console,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http,
        ):
            r = await http.post(
                "/v1/alerts", json=sos(), headers={**member.headers, "X-Request-ID": "phone-7a1"}
            )
            assert r.status_code == 201 and r.headers["x-request-id"] == "phone-7a1"
            incident_id = r.json()["incident_id"]
            r2 = await http.post("/v1/alerts", json=sos(), headers=alone.headers)
            assert r2.status_code == 201
            generated = r2.headers["x-request-id"]

            msg = await console.wait_for(
                lambda m: m["type"] == "incident" and m["incident"]["id"] == incident_id, 10
            )
            assert msg["request_id"] == "phone-7a1"
            msg2 = await console.wait_for(
                lambda m: (
                    m["type"] == "incident" and m["incident"]["id"] == r2.json()["incident_id"]
                ),
                10,
            )
            assert msg2["request_id"] == generated

        http_lines = await _lines_with(api_log, "phone-7a1")
        assert {line["logger"] for line in http_lines} >= {"ansim.access", "app.api.alerts"}
        (access,) = [line for line in http_lines if line["logger"] == "ansim.access"]
        assert access["path"] == "/v1/alerts" and access["status"] == 201
        (accepted,) = [line for line in http_lines if line["logger"] == "app.api.alerts"]
        assert accepted["incident_id"] == incident_id and accepted["routed_at_intake"] is False
        (routed,) = await _lines_with(dispatcher_log, "phone-7a1")
        assert routed["logger"] == "app.dispatch.routing" and routed["incident_id"] == incident_id
        # The intake-routed one: the API's lines carry its generated id.
        assert any(
            line.get("routed_at_intake") is True for line in await _lines_with(api_log, generated)
        )
    finally:
        dispatcher.stop()
        api.stop()

    # Still one object a line after the shutdown, and nothing personal in any of them.
    text = "\n".join(
        orjson.dumps(line).decode() for line in _lines(api_log) + _lines(dispatcher_log)
    )
    assert positions_in(text) == []
    assert phones_in(text) == []
    assert traces_of(text, points=[(HERE["lat"], HERE["lon"])], phone=GUARDIAN_PHONE) == []
    for name_ in ("Seo Yeonhee", "Han Jiwoo", "Kim Minji", "Mom"):
        assert name_ not in text
