"""JSON logs and the request id that follows an SOS (app/logs.py), in-process against real
PostgreSQL and Redis; tests/e2e/test_request_id_e2e.py does it with real processes."""

from __future__ import annotations

import logging
import re
import uuid

import httpx
import orjson
import pytest

from app import logs
from app.dispatch import routing
from app.dispatch.gateways import build_gateways
from tests.api.test_alerts import GANGNAM, HERE, sos
from tests.security.leaks import phones_in, positions_in


def _json_lines(records: list[logging.LogRecord]) -> list[dict[str, object]]:
    formatter = logs.JsonFormatter()
    lines = [formatter.format(r) for r in records]
    for line in lines:
        assert "\n" not in line
    return [orjson.loads(line) for line in lines]


def _no_personal_data(lines: list[dict[str, object]]) -> None:
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    assert positions_in(text) == [], text
    assert phones_in(text) == [], text


def test_a_json_line_is_one_object_with_time_level_logger_message_and_fields():
    record = logging.LogRecord("app.x", logging.WARNING, __file__, 1, "took %d ms", (12,), None)
    record.incident_id = "abc"
    token = logs.REQUEST_ID.set("req-1")
    try:
        line = orjson.loads(logs.JsonFormatter().format(record))
    finally:
        logs.REQUEST_ID.reset(token)
    assert line["level"] == "WARNING"
    assert line["logger"] == "app.x"
    assert line["message"] == "took 12 ms"
    assert line["incident_id"] == "abc"
    assert line["request_id"] == "req-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(line["time"]))
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "app.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = orjson.loads(logs.JsonFormatter().format(record))
    assert "ValueError: boom" in str(line["exception"])


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("edge-7f3a.42:1", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ("<script>", False),
        ("", False),
    ],
)
async def test_a_sane_request_id_is_kept_and_any_other_replaced(client, sent, kept):
    r = await client.get("/healthz", headers={"X-Request-ID": sent})
    echoed = r.headers["x-request-id"]
    if kept:
        assert echoed == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{16}", echoed), echoed


async def test_every_response_has_a_new_request_id(client):
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first != second


async def test_an_sos_routed_at_intake_carries_its_request_id_to_the_log_outbox_and_console(
    client, pool, redis, settings, make_district, make_member, caplog
):
    await make_district(*GANGNAM)
    member = await make_member()
    caplog.set_level(logging.INFO, logger="app")
    r = await client.post(
        "/v1/alerts", json=sos(), headers={**member.headers, "X-Request-ID": "sos-intake-1"}
    )
    assert r.status_code == 201 and r.headers["x-request-id"] == "sos-intake-1"
    incident_id = r.json()["incident_id"]
    payload = await pool.fetchval("SELECT payload FROM outbox WHERE incident_id = $1", incident_id)
    assert payload["request_id"] == "sos-intake-1"
    ((_cursor, fields),) = await redis.xrange(settings.console_stream)
    message = orjson.loads(fields[b"body"])
    assert message["request_id"] == "sos-intake-1"
    assert message["incident"]["id"] == incident_id and "request_id" not in message["data"]
    lines = _json_lines([r for r in caplog.records if r.name == "app.api.alerts"])
    (line,) = lines
    assert line["request_id"] == "sos-intake-1"
    assert line["incident_id"] == incident_id and line["routed_at_intake"] is True
    _no_personal_data(lines)


async def test_the_dispatcher_logs_the_request_id_when_it_routes_and_shows_it(
    client, pool, redis, settings, make_district, make_member, caplog
):
    """Her guardians are to be texted: the intake leaves the SOS to a dispatcher, whose routing
    line and console message carry the request id that came with the entry."""
    await make_district(*GANGNAM)
    member = await make_member()
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+821055501234')",
        uuid.uuid4(),
        member.id,
    )
    r = await client.post(
        "/v1/alerts", json=sos(), headers={**member.headers, "X-Request-ID": "sos-dispatch-1"}
    )
    assert r.status_code == 201
    assert await redis.xlen(settings.console_stream) == 0  # not routed at intake
    ((entry_id, fields),) = await redis.xrange(settings.stream_incidents)
    entry = routing.parse_entry(fields, stream_id=entry_id.decode())
    assert entry.payload["request_id"] == "sos-dispatch-1"
    caplog.set_level(logging.INFO, logger="app")
    caplog.clear()
    async with httpx.AsyncClient() as http:
        ctx = routing.Context(pool, redis, settings, build_gateways(settings, http))
        await routing.handle(ctx, entry)
    ((_cursor, console),) = await redis.xrange(settings.console_stream)
    assert orjson.loads(console[b"body"])["request_id"] == "sos-dispatch-1"
    lines = _json_lines(caplog.records)
    routed = [line for line in lines if line["logger"] == "app.dispatch.routing"]
    assert [line["request_id"] for line in routed] == ["sos-dispatch-1"]
    assert routed[0]["incident_id"] == r.json()["incident_id"]
    _no_personal_data(lines)
    assert str(HERE["lat"]) not in str(lines)
