"""Promise 9: nothing her phone is answered after a duress cancel tells it from a real cancel.

Two women go through the same flow side by side, one cancelling with her PIN, the other with
her duress PIN, while police work on the duress alert; every answer her phone gets (cancel,
trail, her view of the alert, her export) must be the same once ids and times are normalised:
status, header names and values, body; and each request costs the same (Argon2 verifications,
statements sent to PostgreSQL)."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from app.incidents import alerts as alerts_service

DISTRICT = ("11680", "강남구", 127.00, 37.45, 127.10, 37.53)
HERE = {"lat": 37.4979, "lon": 127.0276}
LATER = {"lat": 37.4990, "lon": 127.0290}

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)")
#: Header values that are times or depend on the length of times and ids.
# (x-request-id: new and random for every request, the same length whatever the PIN.)
_VARYING_HEADERS = {"date", "content-length", "retry-after", "x-request-id"}


class Costs:
    """What requests cost: Argon2 verifications and statements sent to PostgreSQL (through the
    ORM's engine and the raw pool)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def take(self) -> dict[str, int]:
        taken = dict(self.counts)
        self.counts.clear()
        return taken


class _CountingPool:
    def __init__(self, pool: Any, costs: Costs) -> None:
        self._pool = pool
        self._costs = costs

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pool, name)
        if name in {"fetch", "fetchrow", "fetchval", "execute", "executemany", "acquire"}:
            self._costs.counts["pool"] += 1
        return attr


@pytest.fixture
def costs(app, monkeypatch):
    c = Costs()
    real_verify = alerts_service.verify_secret

    def verify(hashed: str, secret: str) -> bool:
        c.counts["argon2"] += 1
        return real_verify(hashed, secret)

    monkeypatch.setattr(alerts_service, "verify_secret", verify)
    # (Set and restored by hand: the app's State keeps its attributes in a dict of its own.)
    pool = app.state.pool
    app.state.pool = _CountingPool(pool, c)
    engine = app.state.sessionmaker.kw["bind"].sync_engine

    def statement(*_args: Any) -> None:
        c.counts["orm"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    yield c
    event.remove(engine, "before_cursor_execute", statement)
    app.state.pool = pool


def _normalised(r: httpx.Response) -> tuple[int, dict[str, str], str]:
    headers = {k: ("*" if k in _VARYING_HEADERS else v) for k, v in r.headers.items()}
    body = _TIME.sub("<time>", _UUID.sub("<id>", r.text))
    return r.status_code, headers, body


async def _flow(client, pool, m, dispatcher, costs: Costs, pin: str) -> dict[str, Any]:
    """Her alert, a dispatcher's look at it, her cancel with ``pin``, the police going on with
    it if it is still open, and everything her phone does afterwards."""
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "location": HERE, "note": "dark street"},
        headers=m.headers,
    )
    assert r.status_code == 201
    incident_id = r.json()["incident_id"]
    trail = {"points": [{**HERE, "accuracy_m": 5.0}]}
    assert (
        await client.post(f"/v1/alerts/{incident_id}/locations", json=trail, headers=m.headers)
    ).status_code == 202
    detail = await client.get(f"/v1/console/incidents/{incident_id}", headers=dispatcher.headers)
    assert detail.status_code == 200

    seen: dict[str, Any] = {}
    costs.take()
    cancel = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": pin}, headers=m.headers
    )
    seen["cancel"] = (_normalised(cancel), costs.take())

    # The police work on it if it is still open for them (the duress one): they read her
    # position and acknowledge it. Nothing of it may reach her phone.
    if await pool.fetchval(
        "SELECT closed_at IS NULL FROM incident WHERE id = $1", uuid.UUID(incident_id)
    ):
        await client.get(f"/v1/console/incidents/{incident_id}", headers=dispatcher.headers)
        ack = await client.post(
            f"/v1/console/incidents/{incident_id}/ack", headers=dispatcher.headers
        )
        assert ack.status_code == 200
    costs.take()

    later = {"points": [{**LATER, "accuracy_m": 5.0}, {**LATER, "accuracy_m": 6.0}]}
    after = await client.post(f"/v1/alerts/{incident_id}/locations", json=later, headers=m.headers)
    seen["trail"] = (_normalised(after), costs.take())
    view = await client.get(f"/v1/alerts/{incident_id}", headers=m.headers)
    seen["view"] = (_normalised(view), costs.take())
    again = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": pin}, headers=m.headers
    )
    seen["cancel_again"] = (_normalised(again), costs.take())
    export = await client.get("/v1/me/export", headers=m.headers)
    assert export.status_code == 200
    alerts = export.json()["alerts"]
    seen["export"] = (_normalised(export)[0], _TIME.sub("<time>", _UUID.sub("<id>", str(alerts))))
    seen["raw"] = {"trail": after.json(), "view": view.json(), "export": alerts}
    seen["incident_id"] = uuid.UUID(incident_id)
    return seen


async def test_a_duress_cancel_answers_her_phone_exactly_like_a_real_one(
    client, pool, make_member, make_staff, make_district, costs
):
    district = await make_district(*DISTRICT)
    dispatcher = await make_staff(district_ids=(district,), badge_number="S-1")
    real_m, duress_m = await make_member(), await make_member()
    real = await _flow(client, pool, real_m, dispatcher, costs, real_m.pin)
    duress = await _flow(client, pool, duress_m, dispatcher, costs, duress_m.duress_pin)

    for step in ("cancel", "trail", "view", "cancel_again", "export"):
        assert real[step] == duress[step], step
    # Nothing but the same answer: the trail answer holds no time, so even its length matches.
    assert real["raw"]["trail"]["stored"] == duress["raw"]["trail"]["stored"] == 2
    assert real["trail"][0][1]["content-length"] == duress["trail"][0][1]["content-length"]
    # Every cancel verifies both hashes.
    assert real["cancel"][1]["argon2"] == duress["cancel"][1]["argon2"] == 2
    # Her view after a cancel shows neither where she is now nor who is coming.
    view = duress["raw"]["view"]
    assert view["status"] == "cancelled" and view["location"] is None
    assert view["responders"] == [] and view["police_acknowledged"] is False
    # Her export shows the alert as it stood at her cancel: no ack, no read after it.
    (exported,) = duress["raw"]["export"]
    assert [e["kind"] for e in exported["timeline"]][-1] == "cancelled"
    assert "acknowledged" not in [e["kind"] for e in exported["timeline"]]
    assert len(exported["trail"]) == 1 and len(exported["location_reads"]) == 1

    # Meanwhile the police have what they need: the points sent after the duress cancel are
    # stored and move the incident; after the real cancel nothing is kept.
    points = "SELECT count(*) FROM location_point WHERE incident_id = $1"
    assert await pool.fetchval(points, duress["incident_id"]) == 3
    assert await pool.fetchval(points, real["incident_id"]) == 1
    row = await pool.fetchrow(
        "SELECT status, duress, ST_Y(location::geometry) AS lat FROM incident WHERE id = $1",
        duress["incident_id"],
    )
    assert (row["status"], row["duress"], row["lat"]) == ("acknowledged", True, LATER["lat"])


async def test_her_export_shows_the_whole_alert_once_the_hold_is_over(
    client, pool, make_member, make_staff, make_district, settings
):
    """After the hold (``cancel_hold_s``) past its close, the duress alert's later records are
    hers to see, reads by the police included."""
    district = await make_district(*DISTRICT)
    dispatcher = await make_staff(district_ids=(district,), badge_number="S-7")
    m = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "location": HERE},
        headers=m.headers,
    )
    incident_id = r.json()["incident_id"]
    await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": m.duress_pin}, headers=m.headers
    )
    await client.get(f"/v1/console/incidents/{incident_id}", headers=dispatcher.headers)
    held = (await client.get("/v1/me/export", headers=m.headers)).json()["alerts"][0]
    assert held["location_reads"] == [] and held["location"] is None
    await pool.execute(
        "UPDATE incident SET status = 'resolved', closed_at = now() - make_interval(secs => $2)"
        " WHERE id = $1",
        uuid.UUID(incident_id),
        settings.cancel_hold_s + 60,
    )
    whole = (await client.get("/v1/me/export", headers=m.headers)).json()["alerts"][0]
    assert whole["location"] is not None
    assert [read["by"] for read in whole["location_reads"]] == [
        [{"role": "dispatcher", "badge_number": "S-7", "unit": DISTRICT[1]}]
    ]
    # Still a cancel to her: the duress never shows.
    assert whole["status"] == "cancelled"
    assert "duress_cancel" not in [e["kind"] for e in whole["timeline"]]


async def test_a_wrong_pin_costs_what_a_right_one_costs_and_the_lockout_tells_nothing(
    client, make_member, settings, costs
):
    """Same Argon2 work for a wrong, a right and a duress PIN; locked out, all three get the
    same 429."""
    m = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "location": HERE},
        headers=m.headers,
    )
    incident_id = r.json()["incident_id"]

    async def cancel(pin: str) -> tuple[tuple[int, dict[str, str], str], int, httpx.Response]:
        costs.take()
        r = await client.post(
            f"/v1/alerts/{incident_id}/cancel", json={"pin": pin}, headers=m.headers
        )
        return _normalised(r), costs.take().get("argon2", 0), r

    wrong = [await cancel("0000") for _ in range(settings.cancel_pin_lockout_after)]
    assert {w[0][0] for w in wrong} == {403}
    assert {w[1] for w in wrong} == {2}
    locked, at = [], []
    for pin in ("0000", m.pin, m.duress_pin):
        locked.append(await cancel(pin))
        at.append(time.monotonic())
    assert {lock[1] for lock in locked} == {2}
    # The same status, headers and body, whichever PIN.
    assert locked[0][0] == locked[1][0] == locked[2][0]
    assert locked[0][0][0] == 429
    # The same lockout end, whichever PIN (each answer's Retry-After plus when it came: on a
    # loaded machine the three answers can be seconds apart).
    ends = [int(lock[2].headers["retry-after"]) + t for lock, t in zip(locked, at, strict=True)]
    assert max(ends) - min(ends) <= 1.5
