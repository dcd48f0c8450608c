"""The order rule of the queue's claim, with the real sender and a real local receiver: an
incident's next change waits while one is retried, and goes once it is given up."""

from __future__ import annotations

import uuid

import httpx

from app.dispatch.gateways import LogGateway
from app.interop import subscriptions
from app.interop.delivery import AgencyGateway
from app.notifications.sender import Sender
from tests.e2e.harness import free_port
from tests.interop.receiver import AgencyReceiver

SECRET = "order-test-secret-000001"


async def test_a_later_change_waits_for_the_retried_one_and_goes_once_it_is_given_up(
    settings, pool, make_district, make_member, make_staff, client
):
    await make_district("11110", "Jongno-gu", 126.90, 37.50, 126.95, 37.55)
    port = free_port()
    async with pool.acquire() as conn:
        sub = await subscriptions.create(
            conn, name="CAD", url=f"http://127.0.0.1:{port}/cad", format="eido",
            district_codes=["11110"], secret=SECRET,
        )  # fmt: skip
    member = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": 37.52, "lon": 126.92},
        },
        headers={"Authorization": f"Bearer {member.token}"},
    )
    incident_id = uuid.UUID(r.json()["incident_id"])
    other = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": 37.53, "lon": 126.93},
        },
        headers={"Authorization": f"Bearer {(await make_member()).token}"},
    )
    other_id = uuid.UUID(other.json()["incident_id"])
    async with pool.acquire() as conn, conn.transaction():
        for outbox_id, kind in ((101, "reported"), (102, "acknowledged"), (103, "responding")):
            await subscriptions.enqueue(
                conn, incident_id=incident_id, outbox_id=outbox_id, kind=kind, deadline_s=60
            )
        await subscriptions.enqueue(
            conn, incident_id=other_id, outbox_id=104, kind="reported", deadline_s=60
        )
    key = f"{subscriptions.target(sub['id'])}:"
    receiver = AgencyReceiver(port, {"/cad": SECRET})
    receiver.unavailable = {f"{key}101"}  # 503 once: retried
    receiver.refuse = {f"{key}102"}  # 400: given up at once
    fast = settings.model_copy(update={"notify_backoff_base_s": 0.0, "notify_backoff_cap_s": 0.0})
    async with httpx.AsyncClient(timeout=5) as http:
        sender = Sender(
            pool=pool,
            settings=fast,
            gateways={
                "agency": AgencyGateway(pool=pool, settings=fast, http=http),
                "sms": LogGateway("sms"),
                "push": LogGateway("push"),
            },
        )
        await receiver.start()
        try:
            rounds = []
            while n := await sender.run_once():
                rounds.append(n)
                assert len(rounds) < 10
        finally:
            await receiver.stop()
    # Round 1: the head of each incident's queue (101 and the other incident's 104), not 102.
    assert rounds[0] == 2
    got = [(d.incident_id, d.idempotency_key.rsplit(":", 1)[1]) for d in receiver.received]
    assert got == [(str(other_id), "104"), (str(incident_id), "101"), (str(incident_id), "103")]
    rows = await pool.fetch(
        "SELECT message->>'outbox_id' AS change, status, attempts, last_error FROM notification"
        " WHERE target = $1 ORDER BY id",
        subscriptions.target(sub["id"]),
    )
    assert [(r["change"], r["status"], r["attempts"]) for r in rows] == [
        ("101", "sent", 2),
        ("102", "failed", 1),
        ("103", "sent", 1),
        ("104", "sent", 1),
    ]
    # The refusal is on her incident's timeline for the console, and queued nothing more.
    assert await pool.fetchval(
        "SELECT count(*) FROM incident_event WHERE incident_id = $1 AND kind = 'notify_failed'",
        incident_id,
    ) == 1  # fmt: skip
    # Each attempt on her incident (four: 101 twice, 102, 103) carried her position: each is
    # in the operators' access log under the agency, written before it left (the refused too).
    operator = await make_staff("operator")
    r = await client.get(
        "/v1/admin/location-access",
        params={"reason": "agency_delivery", "incident_id": str(incident_id)},
        headers=operator.headers,
    )
    entries = r.json()["entries"]
    assert len(entries) == 4
    assert {e["agency_subscription_id"] for e in entries} == {sub["id"]}
    assert all(e["staff"] == [] for e in entries)
