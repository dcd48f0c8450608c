"""Agencies' subscriptions end to end, with real processes: an API and two dispatchers, and a
real local agency receiver that is down (connection refused) while the incident runs its whole
course, then comes up. Every change reaches each agency that takes the district, once, signed,
in order, valid against the standard's schema; every attempt is recorded, every delivery of
her position logged; an agency of another district gets nothing."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
from lxml import etree

from app.dispatch.gateways import verify
from app.interop import subscriptions
from tests.e2e.harness import free_ports, settled, stack_env, start_api, start_dispatcher
from tests.faults.common import Phone, make_members
from tests.interop.receiver import AgencyReceiver
from tests.interop.schemas import cap_errors, eido_errors

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SECRETS = {"/eido": "eido-agency-secret-0001", "/cap": "cap-agency-secret-00002"}
#: The order an incident's status moves in (the documents may never go back).
RANK = {"new": 0, "acknowledged": 1, "responding": 2, "on_scene": 3, "resolved": 4}


def _status(d) -> str:
    if d.path == "/eido":
        return orjson.loads(d.body)["incidentComponent"]["incidentStatusInternalText"][0]
    root = etree.fromstring(d.body)
    for p in root.iter(f"{CAP}parameter"):
        if p.findtext(f"{CAP}valueName") == "ansim:status":
            return str(p.findtext(f"{CAP}value"))
    raise AssertionError("no status")


async def test_every_change_reaches_the_agencies_in_order_after_an_outage(
    migrated, settings, pool, make_district, make_staff
):
    api_port, agency_port = free_ports(2)
    district = await make_district("11110", "Jongno-gu", 126.90, 37.50, 126.95, 37.55)
    await make_district("11140", "Jung-gu", 126.95, 37.50, 127.00, 37.55)
    dispatcher = await make_staff("dispatcher", district_ids=(district,))
    base = f"http://127.0.0.1:{agency_port}"
    async with pool.acquire() as conn:
        eido_sub = await subscriptions.create(
            conn, name="Jongno CAD", url=f"{base}/eido", format="eido",
            district_codes=["11110"], secret=SECRETS["/eido"],
        )  # fmt: skip
        cap_sub = await subscriptions.create(
            conn, name="112 centre", url=f"{base}/cap", format="cap", district_codes=[],
            secret=SECRETS["/cap"],
        )  # fmt: skip
        other = await subscriptions.create(
            conn, name="Jung CAD", url=f"{base}/other", format="cap", district_codes=["11140"]
        )  # fmt: skip
    [token] = await make_members(pool, 1)
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="600",  # no escalations: the dispatcher's changes are counted
        ANSIM_NOTIFY_BACKOFF_BASE_S="0.2",
        ANSIM_NOTIFY_BACKOFF_CAP_S="1",
        ANSIM_NOTIFY_POLL_S="0.2",
        ANSIM_NOTIFY_DEADLINE_S="120",
    )
    procs = [
        start_dispatcher("interop-d1", env),
        start_dispatcher("interop-d2", env),
        await asyncio.to_thread(start_api, api_port, env),
    ]
    receiver = AgencyReceiver(agency_port, SECRETS)
    try:
        api = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(timeout=10) as http:
            phone = Phone(token)
            r = await phone.send(http, api)
            assert r is not None and r.status_code == 201, r and r.text
            iid = phone.incident_id
            h = {"Authorization": f"Bearer {dispatcher.token}"}
            steps = [
                ("ack", {}),
                ("assign", {"kind": "unit", "unit": "Jongno-12"}),
                ("status", {"status": "responding"}),
                ("status", {"status": "on_scene"}),
                ("status", {"status": "resolved", "disposition": "she is safe"}),
            ]
            for action, body in steps:
                r = await http.post(
                    f"{api}/v1/console/incidents/{iid}/{action}", json=body, headers=h
                )
                assert r.status_code == 200, r.text
        eido_target = subscriptions.target(eido_sub["id"])
        # The outage: each change is queued and tried, and the failures are recorded.
        assert await settled(
            pool,
            "SELECT count(*) FROM notification WHERE target = $1 AND message->>'kind' = 'resolved'",
            eido_target,
            within=30,
        )
        assert await settled(
            pool,
            "SELECT count(*) >= 3 FROM delivery_attempt WHERE target = $1 AND NOT ok",
            eido_target,
            within=15,
        )
        await asyncio.sleep(1.5)
        assert receiver.received == []
        await receiver.start()
        for sub in (eido_sub, cap_sub):
            assert await settled(
                pool,
                "SELECT count(*) = 0 FROM notification WHERE target = $1 AND status = 'pending'",
                subscriptions.target(sub["id"]),
                within=30,
            )
    finally:
        await receiver.stop()
        for p in procs:
            p.stop()

    assert receiver.rejected == 0
    assert receiver.at("/other") == []
    assert await pool.fetchval(
        "SELECT count(*) FROM notification WHERE target = $1", subscriptions.target(other["id"])
    ) == 0  # fmt: skip
    for path, sub in (("/eido", eido_sub), ("/cap", cap_sub)):
        target = subscriptions.target(sub["id"])
        got = receiver.at(path)
        rows = await pool.fetch(
            "SELECT id, status, sent_at, message->>'kind' AS kind FROM notification"
            " WHERE target = $1 ORDER BY id",
            target,
        )
        # Every change once (by its Idempotency-Key), all sent, in the order they were queued.
        assert [r["status"] for r in rows] == ["sent"] * len(rows)
        assert {r["kind"] for r in rows} >= {"reported", "acknowledged", "responding", "resolved"}
        assert sorted({d.idempotency_key for d in got}) == sorted(
            f"{target}:{k}" for k in await pool.fetchval(
                "SELECT array_agg(message->>'outbox_id') FROM notification WHERE target = $1",
                target,
            )
        )  # fmt: skip
        assert [d.sequence for d in got] == [r["id"] for r in rows]
        assert all(d.incident_id == iid for d in got)
        # No delivery was tried before the one before it was sent.
        order = await pool.fetchval(
            "SELECT bool_and(a.created_at >= p.sent_at) FROM delivery_attempt a"
            " JOIN notification n ON n.id = a.notification_id"
            " JOIN LATERAL (SELECT sent_at FROM notification e WHERE e.target = n.target"
            "   AND e.incident_id = n.incident_id AND e.id < n.id ORDER BY e.id DESC LIMIT 1) p"
            "   ON true WHERE n.target = $1",
            target,
        )
        assert order is True
        statuses = [_status(d) for d in got]
        assert statuses == sorted(statuses, key=RANK.__getitem__), statuses
        assert statuses[-1] == "resolved"
        for d in got:
            assert d.signature.startswith("t=") and not verify(
                "another-secret", d.signature, d.body
            )
            if path == "/eido":
                assert d.content_type == "application/json"
                assert eido_errors(orjson.loads(d.body)) == []
            else:
                assert d.content_type.startswith("application/cap+xml")
                assert cap_errors(d.body) == [], d.body
            assert b"she is safe" not in d.body  # the disposition is police's words
        attempts = await pool.fetch(
            "SELECT ok, error FROM delivery_attempt WHERE target = $1 ORDER BY id", target
        )
        assert not attempts[0]["ok"] and attempts[0]["error"] == "ConnectError"
        assert sum(a["ok"] for a in attempts) == len(rows)
        # Each attempt carried her position and is in the access log, naming the agency.
        logged = await pool.fetchval(
            "SELECT count(*) FROM location_access WHERE reason = 'agency_delivery'"
            " AND agency_subscription_id = $1 AND incident_id = $2",
            uuid.UUID(sub["id"]),
            uuid.UUID(iid),
        )
        assert logged == len(attempts)
    # The timeline says each delivery was made (no document about our own deliveries).
    assert await pool.fetchval(
        "SELECT count(*) FROM incident_event WHERE incident_id = $1 AND kind = 'notified'"
        " AND data->>'channel' = 'agency'",
        uuid.UUID(iid),
    ) == len(receiver.received)  # fmt: skip
