"""Guardians are told of the report, the acknowledgement, the escalation and the close; their
link shows her alert while it is open. A duress cancel tells them what a real cancel does, and
leaves the link live."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from app.dispatch import routing
from app.dispatch.gateways import build_gateways
from app.dispatch.relay import publish_pending
from app.incidents.store import NewIncident, insert_incident
from app.notifications.sender import Sender
from tests.e2e.harness import GATEWAY_KEY, GatewayReceiver, free_port

IN_A = (37.52, 126.92)


@pytest.fixture
async def gateway():
    receiver = GatewayReceiver(free_port())
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def ctx(pool, redis, settings, gateway):
    s = settings.model_copy(
        update={
            "push_gateway_url": f"http://127.0.0.1:{gateway.port}/push",
            "sms_gateway_url": f"http://127.0.0.1:{gateway.port}/sms",
            "gateway_hmac_key": GATEWAY_KEY,
            "public_base_url": "https://ansim.example/",
        }
    )
    async with httpx.AsyncClient() as http:
        yield routing.Context(pool, redis, s, build_gateways(s, http))


async def _route_everything(ctx) -> None:
    """What the relay and a dispatcher do: publish the committed outbox rows, route each
    entry (again: routing is idempotent), send what it queued."""
    for _ in range(100):
        await publish_pending(ctx.pool, ctx.redis, ctx.settings)
        if not await ctx.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            break
        await asyncio.sleep(0.02)  # the API's own relay holds them: it publishes them now
    for _id, fields in await ctx.redis.xrange(ctx.settings.stream_incidents):
        await routing.handle(ctx, routing.parse_entry(fields))
    sender = Sender(pool=ctx.pool, settings=ctx.settings, gateways=ctx.gateways)
    while await sender.run_once():
        pass


async def _world(pool, make_member, make_district, make_staff, guardians=2):
    district = await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member(name="Jiyoung")
    for i in range(guardians):
        await pool.execute(
            "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'G', $3)",
            uuid.uuid4(),
            member.id,
            f"+82100000000{i}",
        )
    dispatcher = await make_staff("dispatcher", district_ids=(district,))
    stored = await insert_incident(
        pool,
        NewIncident("app", "sos", "t", member_id=member.id, lat=IN_A[0], lon=IN_A[1]),
    )
    assert stored is not None
    return member, dispatcher, stored.id


def _texts(gateway) -> list[tuple[str, str]]:
    return [(m["to"], m["message"]["text"]) for m in gateway.received if m["path"] == "/sms"]


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_guardians_hear_the_report_the_ack_the_escalation_and_the_close(
    ctx, pool, client, gateway, make_member, make_district, make_staff
):
    _member, dispatcher, incident_id = await _world(pool, make_member, make_district, make_staff)
    await _route_everything(ctx)
    first = [m for m in gateway.received if m["path"] == "/sms"]
    assert len(first) == 2 and {m["message"]["type"] for m in first} == {"guardian_alert"}
    assert first[0]["message"]["text"].startswith("Jiyoung sent an SOS. Police have been alerted.")
    url = first[0]["message"]["url"]
    assert (
        url.startswith("https://ansim.example/guardian/ag_") and url in first[0]["message"]["text"]
    )
    # Each guardian has a link of their own, and the queue holds no token.
    assert first[1]["message"]["url"] != url
    assert (
        await pool.fetchval("SELECT count(*) FROM notification WHERE message::text LIKE '%ag_%'")
        == 0
    )
    token = _token(url)

    r = await client.get(f"/v1/guardian/{token}")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["name"] == "Jiyoung" and view["status"] == "new"
    assert view["location"]["lat"] == pytest.approx(IN_A[0])
    assert view["police"]["acknowledged_at"] is None
    guardian_id = uuid.UUID(first[0]["to"].split(":")[1])
    logged = await pool.fetch(
        "SELECT staff_ids, guardian_id, reason FROM location_access WHERE incident_id = $1",
        incident_id,
    )
    assert [(r["staff_ids"], r["guardian_id"], r["reason"]) for r in logged] == [
        ([], guardian_id, "guardian_view")
    ]

    await pool.execute(
        "UPDATE incident SET ack_deadline_at = now() - interval '1 s' WHERE id = $1", incident_id
    )
    assert await routing.escalate_overdue(pool, ctx.settings) == 1
    await _route_everything(ctx)
    r = await client.post(f"/v1/console/incidents/{incident_id}/ack", headers=dispatcher.headers)
    assert r.status_code == 200, r.text
    await _route_everything(ctx)
    assert (await client.get(f"/v1/guardian/{token}")).json()["status"] == "acknowledged"
    r = await client.post(
        f"/v1/console/incidents/{incident_id}/status",
        json={"status": "resolved", "disposition": "escorted home"},
        headers=dispatcher.headers,
    )
    assert r.status_code == 200, r.text
    await _route_everything(ctx)
    await _route_everything(ctx)  # a redelivery of everything texts nobody twice

    texts = [t for to, t in _texts(gateway) if to == first[0]["to"]]
    assert [t.split(" Follow her:")[0] for t in texts] == [
        "Jiyoung sent an SOS. Police have been alerted.",
        "Jiyoung's SOS has been escalated to a police supervisor.",
        "Police have acknowledged Jiyoung's SOS and are handling it.",
        "Police have closed Jiyoung's SOS.",
    ]
    assert all(url in t for t in texts[:3]) and "http" not in texts[3]
    assert len(_texts(gateway)) == 8  # two guardians, four messages each
    keys = [m["idempotency_key"] for m in gateway.received]
    assert len(keys) == len(set(keys))

    r = await client.get(f"/v1/guardian/{token}")
    assert r.status_code == 410
    assert r.json()["error"] == "GuardianViewClosed"
    r = await client.get("/v1/guardian/ag_" + "x" * 43)
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    # The page itself loads for any link (it asks the API for the data).
    page = await client.get(f"/guardian/{token}")
    assert page.status_code == 200 and "guardian.js" in page.text


async def _cancel(client, member, incident_id, pin):
    r = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": pin}, headers=member.headers
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("duress", [False, True], ids=["real-cancel", "duress-cancel"])
async def test_a_duress_cancel_tells_guardians_what_a_cancel_does_but_the_view_stays_live(
    ctx, pool, client, gateway, make_member, make_district, make_staff, duress
):
    member, dispatcher, incident_id = await _world(
        pool, make_member, make_district, make_staff, guardians=1
    )
    await _route_everything(ctx)
    token = _token(gateway.received[0]["message"]["url"])
    await _cancel(client, member, incident_id, member.duress_pin if duress else member.pin)
    await _route_everything(ctx)
    sms = [m for m in gateway.received if m["path"] == "/sms"]
    assert [m["message"]["text"] for m in sms][1:] == ["Jiyoung cancelled her SOS."]
    assert sms[1]["message"]["type"] == "guardian_closed" and "url" not in sms[1]["message"]
    r = await client.get(f"/v1/guardian/{token}")
    if not duress:
        assert r.status_code == 410
        return
    # The incident is open and escalated: the guardian's link still follows her ...
    assert r.status_code == 200 and r.json()["status"] == "new"
    assert await pool.fetchval("SELECT escalation_level FROM incident") == 1
    # ... but no message says so: after "she cancelled", guardians are told nothing more.
    r = await client.post(f"/v1/console/incidents/{incident_id}/ack", headers=dispatcher.headers)
    assert r.status_code == 200
    await _route_everything(ctx)
    assert len([m for m in gateway.received if m["path"] == "/sms"]) == 2
    r = await client.post(
        f"/v1/console/incidents/{incident_id}/status",
        json={"status": "false_alarm"},
        headers=dispatcher.headers,
    )
    await _route_everything(ctx)
    assert len([m for m in gateway.received if m["path"] == "/sms"]) == 2
    assert (await client.get(f"/v1/guardian/{token}")).status_code == 410
