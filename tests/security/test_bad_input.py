"""Hostile bytes on every kind of endpoint: a 4xx with the stable body, never a 5xx."""

from __future__ import annotations

import uuid

import pytest

DEEP = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
BODIES = {
    "nul": b'{"pin": "12\\u000034"}',
    "raw_nul": b'{"pin": "12\x0034"}',
    "non_utf8": b'{"pin": "\xff\xfe\xfd"}',
    "nan": b'{"pin": NaN}',
    "huge_number": b'{"pin": 1' + b"0" * 5000 + b"}",
    "duplicate_keys": b'{"pin": "1", "pin": "2", "pin": {"x": 1}}',
    "deep": DEEP[:60_000],
    "not_json": b"\x00\x01\x02",
    "array": b"[" * 5000,
    "lone_surrogate": b'{"pin": "\\ud800"}',
}


@pytest.fixture
async def alert(client, make_member):
    m = await make_member()
    r = await client.post(
        "/v1/alerts", json={"client_alert_id": str(uuid.uuid4())}, headers=m.headers
    )
    return m, r.json()["incident_id"]


@pytest.mark.parametrize("name", sorted(BODIES))
@pytest.mark.parametrize(
    "path",
    [
        "/v1/alerts/{id}/cancel",
        "/v1/alerts/{id}/locations",
        "/v1/me/guardians",
        "/v1/auth/login",
        "/v1/me/erase",
    ],
)
async def test_strict_endpoints_answer_4xx_to_hostile_bodies(client, alert, path, name, pool):
    m, incident_id = alert
    r = await client.post(
        path.format(id=incident_id),
        content=BODIES[name],
        headers={**m.headers, "content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert {"error", "detail"} <= set(r.json())
    # Nothing was cancelled or erased by garbage.
    assert await pool.fetchval("SELECT status FROM incident") == "new"


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_the_sos_takes_or_refuses_hostile_bodies_cleanly(client, make_member, name):
    m = await make_member()
    r = await client.post(
        "/v1/alerts",
        content=BODIES[name],
        headers={**m.headers, "content-type": "application/json"},
    )
    assert r.status_code in (200, 201, 400), (r.status_code, r.text)
    if r.status_code == 400:
        assert r.json()["error"] == "NotAJSONObject"


@pytest.mark.parametrize(
    "query",
    [
        "lat=NaN&lon=127",
        "lat=1e999&lon=127",
        "lat=37.5&lon=inf",
        "lat=91&lon=0",
        "lat=37.5&lon=127&limit=100000",
        "lat=%00&lon=1",
        "lat=37.5&lon=127&kind=teleport",
    ],
)
async def test_nearest_refuses_bad_queries_with_422(client, make_member, query):
    m = await make_member()
    r = await client.get(f"/v1/safe-places/nearest?{query}", headers=m.headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


# Found by the OpenAPI fuzz (both were 500s): text PostgreSQL cannot hold, and an id past bigint.
@pytest.mark.parametrize(
    "raw",
    [b'{"username": "ki\\u0000m", "password": "x"}', b'{"username": "\\ud8cd", "password": "x"}'],
)
async def test_sign_in_with_text_postgres_cannot_hold_is_a_422(client, raw):
    r = await client.post(
        "/v1/auth/login", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"


@pytest.mark.parametrize(
    "query", ["before_id=8534226746029822668513825210899628032", "reason=a%00b", "kind=a%00b"]
)
async def test_operator_log_queries_refuse_unstorable_values_with_422(client, make_staff, query):
    operator = await make_staff("operator")
    path = "/v1/admin/security-events" if query.startswith("kind") else "/v1/admin/location-access"
    r = await client.get(f"{path}?{query}", headers=operator.headers)
    assert r.status_code == 422, r.text
