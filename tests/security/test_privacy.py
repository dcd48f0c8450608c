"""Promise: logs never contain tokens, secrets, PINs, passwords, precise locations or phones.

Two nets: every log record of the in-process app and an in-process dispatcher at DEBUG
(caplog), and the whole stdout/stderr of the production command (``ansim serve --dispatchers
1``: uvicorn at its default INFO level plus a dispatcher) while a console connects with its
token in the query string, an SOS with a position is raised, trailed and cancelled with a PIN,
staff sign in and a panic button signs its requests. Positions and phone numbers are found by
the detector the Redis scan uses (tests/security/leaks.py): anybody's, at 4 decimals or more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from app.devices.signing import sign_request
from app.dispatch import presence
from app.dispatch.worker import Dispatcher
from app.security.passwords import hash_secret
from app.security.redact import redact
from tests.devices.helpers import make_device
from tests.e2e.harness import ROOT, free_port, stack_env
from tests.security.leaks import phones_in, positions_in, traces_of
from tests.security.live_server import ws_session

# Distinctive values: a hit in the logs cannot be a coincidence.
PIN, DURESS, WRONG_PIN = "73918264", "51729384", "60482715"
PASSWORD = "violet-harbour-93716-lantern"
LAT, LON = 37.5218734, 126.9276519
TRAIL = (37.5219871, 126.9277632)
STORE = (37.5223456, 126.9281234)


PHONE, GUARDIAN_PHONE = "+821055501234", "010-7770-1234"


def secrets_in(text: str, secrets: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in secrets.items() if value and value in text}


def location_digits() -> dict[str, str]:
    # The digits after the first decimal places: "37.5218734" leaks as "5218734" in any format.
    return {f"coordinate {v}": f"{v:.7f}".split(".")[1][1:] for v in (LAT, LON, *TRAIL)}


def leaks_in(text: str) -> list[str]:
    """Positions and phone numbers, hers or anybody's (a store's too: it is where she ran)."""
    return (
        traces_of(text, points=((LAT, LON), TRAIL, STORE), phone=PHONE)
        + traces_of(text, phone="+82" + GUARDIAN_PHONE.replace("-", "")[1:])
        + positions_in(text)
        + phones_in(text)
    )


@pytest.fixture
async def people(pool, redis, settings, make_district, make_place, make_staff):
    district = await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    member_id, staff_id = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO member (id, phone, name, pin_hash, duress_pin_hash, wrong_pin_count)"
        " VALUES ($1, $4, 'Jiyoung', $2, $3, 0)",
        member_id,
        hash_secret(PIN),
        hash_secret(DURESS),
        PHONE,
    )
    # Her guardian is texted and a volunteer near her is offered the alert: both messages go
    # through the logging gateway here, and neither may log a number or a position.
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mother', $3)",
        uuid.uuid4(),
        member_id,
        GUARDIAN_PHONE,
    )
    volunteer = await make_staff("volunteer")
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.5221, lon=126.9281)
    from app.security.tokens import MEMBER_PREFIX, hash_token, new_token

    member_token = new_token(MEMBER_PREFIX)
    await pool.execute(
        "INSERT INTO member_token (id, member_id, token_hash) VALUES ($1, $2, $3)",
        uuid.uuid4(),
        member_id,
        hash_token(member_token),
    )
    username = f"kim-{staff_id.hex[:6]}"
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, active)"
        " VALUES ($1, $2, 'Kim', 'dispatcher', $3, false, true)",
        staff_id,
        username,
        hash_secret(PASSWORD),
    )
    await pool.execute("INSERT INTO staff_district VALUES ($1, $2)", staff_id, district)
    place = await make_place("GS25 A", *STORE)
    device = await make_device(pool, place)
    return {
        "member_token": member_token,
        "username": username,
        "device": device,
        "secrets": {
            "member token": member_token,
            "PIN": PIN,
            "duress PIN": DURESS,
            "wrong PIN": WRONG_PIN,
            "password": PASSWORD,
            "device secret": device.secret,
            **location_digits(),
        },
    }


async def exercise(http: httpx.AsyncClient, people: dict, secrets: dict[str, str]) -> str:
    """Everything that handles a secret or a position; returns the incident id."""
    r = await http.post(
        "/v1/auth/login", json={"username": people["username"], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    staff_token = r.json()["token"]
    secrets["staff token"] = staff_token
    bad = await http.post(
        "/v1/auth/login", json={"username": people["username"], "password": "x" + PASSWORD}
    )
    assert bad.status_code == 401
    member = {"authorization": f"Bearer {people['member_token']}"}
    staff = {"authorization": f"Bearer {staff_token}"}
    r = await http.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": LAT, "lon": LON, "accuracy_m": 6},
            "note": "near the bus stop",
        },
        headers=member,
    )
    assert r.status_code == 201, r.text
    incident = r.json()["incident_id"]
    r = await http.post(
        f"/v1/alerts/{incident}/locations",
        json={"points": [{"lat": TRAIL[0], "lon": TRAIL[1], "accuracy_m": 4}]},
        headers=member,
    )
    assert r.status_code == 202
    assert (await http.get(f"/v1/console/incidents/{incident}", headers=staff)).status_code == 200
    assert (await http.get("/v1/me/export", headers=member)).status_code == 200
    r = await http.post(f"/v1/alerts/{incident}/cancel", json={"pin": WRONG_PIN}, headers=member)
    assert r.status_code == 403
    r = await http.post(f"/v1/alerts/{incident}/cancel", json={"pin": PIN}, headers=member)
    assert r.status_code == 200
    device = people["device"]
    for body in (
        {"type": "panic", "signal_id": str(uuid.uuid4())},
        {"type": "heartbeat", "battery_pct": 90},
    ):
        raw = orjson.dumps(body)
        r = await http.post(device.url, content=raw, headers=sign_request(device.secret, raw))
        assert r.status_code in (200, 201), r.text
    raw = orjson.dumps({"type": "heartbeat"})
    forged = await http.post(device.url, content=raw, headers=sign_request("f" * 64, raw))
    assert forged.status_code == 401
    return str(incident)


async def test_no_secret_or_position_reaches_the_in_process_logs(
    client, people, caplog, pool, redis, settings
):
    caplog.set_level(logging.DEBUG)
    secrets = dict(people["secrets"])
    async with httpx.AsyncClient() as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=settings, http=http, name="privacy")
        task = asyncio.create_task(worker.run())
        try:
            incident = await exercise(client, people, secrets)
            for _ in range(100):  # until the dispatcher has routed it (it logs as it goes)
                if await pool.fetchval(
                    "SELECT count(*) FROM incident_event WHERE incident_id = $1"
                    " AND kind = 'routed'",
                    uuid.UUID(incident),
                ):
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    assert caplog.records, "nothing was logged: the net caught nothing"
    text = (
        "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
        + caplog.text
    )
    assert "sms to guardian:" in text and "push to volunteer:" in text, "no message was logged"
    assert secrets_in(text, secrets) == {}
    assert leaks_in(text) == []


def test_redaction_keeps_the_shape_of_uvicorn_records():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (
            "127.0.0.1:5000",
            "GET",
            "/v1/console/stream?cursor=1-0&token=as_abcdefghijklmnopqrstuvwx",
            "1.1",
            101,
        ),
        None,
    )
    from app.security.redact import RedactCredentials

    assert RedactCredentials().filter(record)
    assert "abcdefghijklmnop" not in record.getMessage()
    assert len(record.args) == 5 and record.args[4] == 101
    assert redact("/v1/x?pin=1234&secret=abc&password=p") == (
        "/v1/x?pin=[redacted]&secret=[redacted]&password=[redacted]"
    )


@contextlib.contextmanager
def production_server(env: dict[str, str], log: Path, port: int):
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--dispatchers", "1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        children: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            children = [
                int(pid)
                for pid in subprocess.run(
                    ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
            ]
            yield proc
        finally:
            proc.terminate()  # the serve command stops its dispatcher too
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            orphans = [pid for pid in children if Path(f"/proc/{pid}").exists()]
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)
            assert orphans == [], "ansim serve left its dispatcher running"


async def test_no_secret_or_position_reaches_the_output_of_real_processes(
    people, pool, settings, tmp_path
):
    secrets = dict(people["secrets"])
    env = stack_env(redis_url=settings.redis_url, gateway_port=None)
    env.pop("ANSIM_LOG_LEVEL", None)
    log = tmp_path / "serve.log"
    port = free_port()
    with production_server(env, log, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            r = await http.post(
                "/v1/auth/login", json={"username": people["username"], "password": PASSWORD}
            )
            console_token = r.json()["token"]
            secrets["console token"] = console_token
            # A console with its token in the query string (the handshake line is logged).
            console = asyncio.create_task(
                ws_session(
                    f"ws://127.0.0.1:{port}/v1/console/stream?token={console_token}",
                    until=lambda ms: any(
                        m["type"] == "incident" and m["event"] == "cancelled" for m in ms
                    ),
                    within=15,
                )
            )
            await asyncio.sleep(0.5)
            await exercise(http, people, secrets)
            messages, _ = await console
        assert any(m["type"] == "incident" for m in messages)  # the dispatcher did its work
    output = log.read_text(errors="replace")
    assert "WebSocket /v1/console/stream" in output, "uvicorn did not log: the net caught nothing"
    assert "dispatcher" in output
    assert secrets_in(output, secrets) == {}
    assert leaks_in(output) == []
