"""Dispatcher internals against real PostgreSQL, Redis and a real local HTTP gateway."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from app.dispatch import console_log, routing
from app.dispatch.gateways import HttpGateway, build_gateways, sign, verify
from app.dispatch.relay import (
    OutboxRelay,
    RelayStats,
    publish_pending,
    republish_unrouted,
    stream_fields,
)
from app.incidents.console_service import incident_summary
from app.incidents.store import NewIncident, insert_incident
from app.notifications import service as notifications
from app.notifications.sender import Sender
from tests.e2e.harness import GATEWAY_KEY, GatewayReceiver, free_port
from tests.plans import Measured, PlanProbe, generic_plan, rows_read

# The session's test app (started by any earlier test) runs its outbox relay in the background:
# it would publish the rows these tests publish by hand, and take the ones they count.
pytestmark = pytest.mark.usefixtures("relay_paused")


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
        }
    )
    async with httpx.AsyncClient() as http:
        yield routing.Context(pool, redis, s, build_gateways(s, http))


async def _send_due(ctx) -> int:
    """What the dispatcher's sender does after a routing commit kicked it: every due message,
    one attempt each."""
    sender = Sender(pool=ctx.pool, settings=ctx.settings, gateways=ctx.gateways)
    total = 0
    while n := await sender.run_once():
        total += n
    return total


async def _handle(ctx, entry):
    acked = await routing.handle(ctx, entry)
    await _send_due(ctx)
    return acked


async def _incident(pool, member, lat=37.52, lon=126.92):
    stored = await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=lat, lon=lon),
    )
    return stored


async def _guardian(pool, member):
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+8210')",
        uuid.uuid4(),
        member.id,
    )


async def _entries(redis, settings):
    rows = await redis.xrange(settings.stream_incidents)
    return [routing.parse_entry(fields) for _id, fields in rows]


async def test_relay_publishes_every_committed_row_once_and_marks_it(
    pool, redis, settings, make_member
):
    member = await make_member()
    for _ in range(3):
        await _incident(pool, member)
    stats = RelayStats()
    # (An API app started by another test may run its own relay: they share the rows.)
    while await publish_pending(pool, redis, settings, stats):
        pass
    entries = await _entries(redis, settings)
    assert [e.kind for e in entries] == ["reported"] * 3
    assert len({e.outbox_id for e in entries}) == 3
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert len(stats.delays) == stats.published and all(d >= 0 for d in stats.delays)


async def test_a_relay_with_redis_down_leaves_rows_for_the_sweeper(pool, settings, make_member):
    from redis.asyncio import Redis

    member = await make_member()
    await _incident(pool, member)
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)  # nobody there
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        await publish_pending(pool, dead, settings)
    await dead.aclose()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1


async def _published_sos(pool, member):
    return await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=37.5, lon=127),
        publish=True,
    )


async def test_an_sos_published_directly_reaches_the_stream_and_the_relay_leaves_it(
    pool, redis, settings, make_member
):
    stored = await _published_sos(pool, await make_member())
    assert stored.to_publish is not None and stored.to_publish.id == stored.outbox_id
    # Written as published: a relay running now must not publish it a second time.
    assert await publish_pending(pool, redis, settings) == 0
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    await relay.publish(stored.to_publish)
    (entry,) = await _entries(redis, settings)
    assert (entry.outbox_id, entry.kind, entry.incident_id) == (
        stored.outbox_id,
        "reported",
        stored.id,
    )
    assert entry.committed_at == stored.to_publish.created_at.timestamp()
    assert relay.stats.published == 1


async def test_a_direct_publish_says_whether_a_fresh_volunteer_is_near(
    pool, redis, settings, make_member, make_staff
):
    """The API's XADD looks up volunteers in the same round trip: near and fresh, or not."""
    from app.dispatch import presence

    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    member = await make_member()

    async def hint() -> bool | None:
        stored = await _published_sos(pool, member)
        await relay.publish(stored.to_publish)
        entry = (await _entries(redis, settings))[-1]
        assert entry.outbox_id == stored.outbox_id
        await pool.execute("UPDATE incident SET closed_at = now() WHERE id = $1", stored.id)
        return entry.volunteers_near

    assert await hint() is False  # nobody on duty
    far = await make_staff("volunteer", name="Far")
    await presence.report(redis, settings, volunteer_id=far.id, lat=37.52, lon=127.0)  # 2.2 km
    assert await hint() is False
    stale = await make_staff("volunteer", name="Stale")
    await presence.report(redis, settings, volunteer_id=stale.id, lat=37.501, lon=127.0)
    await redis.zadd(settings.volunteer_seen_key, {str(stale.id): 1.0})  # last seen long ago
    assert await hint() is False
    near = await make_staff("volunteer", name="Near")
    await presence.report(redis, settings, volunteer_id=near.id, lat=37.502, lon=127.0)
    assert await hint() is True
    # Without a position there is nobody near it; the relay's own entries carry no hint (the
    # dispatcher looks for itself).
    nowhere = await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=(await make_member()).id),
        publish=True,
    )
    await relay.publish(nowhere.to_publish)
    await _incident(pool, await make_member(), lat=37.502, lon=127.0)
    await publish_pending(pool, redis, settings)
    assert [e.volunteers_near for e in (await _entries(redis, settings))[-2:]] == [False, None]


async def test_an_sos_redis_refuses_goes_back_to_the_relay(pool, redis, settings, make_member):
    from redis.asyncio import Redis

    stored = await _published_sos(pool, await make_member())
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)  # nobody there
    relay = OutboxRelay(pool=pool, redis=dead, settings=settings)
    await relay.publish(stored.to_publish)  # no exception: the phone still gets her answer
    await dead.aclose()
    assert await pool.fetchval(
        "SELECT published_at IS NULL FROM outbox WHERE id = $1", stored.outbox_id
    )
    assert await publish_pending(pool, redis, settings) == 1  # the relay takes it from here
    assert [e.outbox_id for e in await _entries(redis, settings)] == [stored.outbox_id]


async def test_a_redelivered_entry_routes_and_notifies_once(
    ctx, pool, redis, settings, make_member, make_district, make_staff, gateway
):
    await make_district("A", "A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    volunteer = await make_staff("volunteer", name="V", badge_number="B-1")
    from app.dispatch import presence

    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.521, lon=126.92)
    await _guardian(pool, member)
    stored = await _incident(pool, member)
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    await _handle(ctx, entry)  # redelivery after a crash before XACK
    assert len(await redis.xrange(settings.console_stream)) == 1
    assert sorted(m["path"] for m in gateway.received) == ["/push", "/sms"]
    kinds = [
        r["kind"]
        for r in await pool.fetch(
            "SELECT kind FROM incident_event WHERE incident_id = $1 ORDER BY id", stored.id
        )
    ]
    assert kinds.count("routed") == 1 and kinds.count("volunteers_offered") == 1
    assert kinds.count("notified") == 2


async def test_a_phone_report_with_nobody_near_routes_in_one_statement_once(
    ctx, pool, redis, settings, make_member, make_district, gateway
):
    """The fast path (no volunteer near, nothing to link): the same effects as the routing
    transaction, and a redelivery adds none of them again."""
    district = await make_district("A", "A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    await _guardian(pool, member)
    stored = await _incident(pool, member)
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)
    assert (entry.payload["lat"], entry.payload["lon"]) == (37.52, 126.92)
    await _handle(ctx, entry)
    await _handle(ctx, entry)  # redelivery after a crash before XACK
    (console,) = await redis.xrange(settings.console_stream)
    message = orjson.loads(console[1][b"body"])
    assert message["event"] == "reported" and message["incident"]["id"] == str(stored.id)
    assert message["incident"]["district_id"] == str(district)
    assert message["incident"]["ack_deadline_at"] is not None
    assert "lat" not in message["data"]  # the payload's copy of the position stays internal
    assert [m["path"] for m in gateway.received] == ["/sms"]
    kinds = [
        r["kind"]
        for r in await pool.fetch(
            "SELECT kind FROM incident_event WHERE incident_id = $1 ORDER BY id", stored.id
        )
    ]
    assert kinds == ["reported", "routed", "notified"]
    assert await pool.fetchval(
        "SELECT count(*) FROM dispatch_receipt WHERE outbox_id = $1", entry.outbox_id
    )
    assert await pool.fetchval(
        "SELECT ack_deadline_at = received_at + make_interval(secs => $2) FROM incident"
        " WHERE id = $1",
        stored.id,
        settings.ack_deadline_s,
    )


async def _geosearches(redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_geosearch", {}).get("calls", 0))


async def _routed_and_offered(ctx, pool, gateway, entry, incident_id, volunteer_id) -> None:
    """Route an entry published with a volunteer near: she is offered it and pushed."""
    assert entry.volunteers_near is True
    await _handle(ctx, entry)
    offered = await pool.fetchval(
        "SELECT volunteer_id FROM offer WHERE incident_id = $1", incident_id
    )
    assert offered == volunteer_id
    assert [m["path"] for m in gateway.received] == ["/push"]


async def test_a_phone_report_routes_on_the_hint_its_publish_carried(
    ctx, pool, redis, settings, make_member, make_district, make_staff, gateway
):
    """Nobody near when the API published: routed in one statement without asking Redis for
    volunteers again. Somebody near: the routing transaction offers them the incident."""
    from app.dispatch import presence

    await make_district("A", "A", 126.90, 37.50, 126.95, 37.55)
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    alone = await insert_incident(
        pool,
        NewIncident("app", "sos", "t", member_id=(await make_member()).id, lat=37.52, lon=126.92),
        publish=True,
    )
    await relay.publish(alone.to_publish)
    (entry,) = await _entries(redis, settings)
    assert entry.volunteers_near is False
    searches = await _geosearches(redis)
    await _handle(ctx, entry)
    assert await _geosearches(redis) == searches
    assert await pool.fetchval(
        "SELECT count(*) FROM incident_event WHERE incident_id = $1 AND kind = 'routed'", alone.id
    )

    volunteer = await make_staff("volunteer", name="V", badge_number="B-2")
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.521, lon=126.921)
    helped = await insert_incident(
        pool,
        NewIncident("app", "sos", "t", member_id=(await make_member()).id, lat=37.52, lon=126.92),
        publish=True,
    )
    await relay.publish(helped.to_publish)
    entry = (await _entries(redis, settings))[-1]
    await _routed_and_offered(ctx, pool, gateway, entry, helped.id, volunteer.id)


async def _claimed(redis, settings) -> routing.Entry:
    """The newest entry, read through the consumer group as a dispatcher reads it."""
    await redis.xgroup_create(settings.stream_incidents, settings.stream_group, id="0")
    ((_stream, [(entry_id, fields)]),) = await redis.xreadgroup(
        settings.stream_group, "t", {settings.stream_incidents: ">"}, count=1
    )
    return routing.parse_entry(fields, stream_id=entry_id.decode())


async def _pending(redis, settings) -> int:
    info = await redis.xpending(settings.stream_incidents, settings.stream_group)
    return int(info["pending"])


@pytest.mark.parametrize("guardians", [False, True], ids=["alone", "with-guardians"])
async def test_a_fast_routed_entry_is_acknowledged_with_its_console_message_if_nothing_follows(
    ctx, pool, redis, settings, make_member, make_district, gateway, guardians
):
    """One round trip for the console message and the XACK when it is the entry's last
    effect; a woman's guardians still to text keep it pending until the worker acknowledges
    it after them."""
    await make_district("A", "A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    if guardians:
        await _guardian(pool, member)
    stored = await _incident(pool, member)
    await publish_pending(pool, redis, settings)
    entry = await _claimed(redis, settings)
    assert await _pending(redis, settings) == 1
    assert await _handle(ctx, entry) is not guardians
    assert await _pending(redis, settings) == (1 if guardians else 0)
    (message,) = await redis.xrange(settings.console_stream)
    assert orjson.loads(message[1][b"body"])["incident"]["id"] == str(stored.id)
    assert [m["path"] for m in gateway.received] == (["/sms"] if guardians else [])
    # A redelivery (XAUTOCLAIM after a crash) appends and texts nothing again; it looks for
    # offers an earlier delivery may have left, and the worker acknowledges it after that.
    assert await _handle(ctx, entry) is False
    assert len(await redis.xrange(settings.console_stream)) == 1
    assert len(gateway.received) == (1 if guardians else 0)


async def test_an_sos_with_its_deadline_set_at_intake_is_routed_without_rewriting_it(
    ctx, pool, redis, settings, make_member
):
    member = await make_member()
    stored = await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=37.5, lon=127),
        ack_deadline_s=settings.ack_deadline_s,
    )
    before = await pool.fetchrow(
        "SELECT xmin::text AS version, ack_deadline_at - received_at AS wait FROM incident"
    )
    assert before["wait"].total_seconds() == settings.ack_deadline_s
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    # Routed (receipt, event, console message with the deadline) and the row left as it was.
    assert await pool.fetchval("SELECT xmin::text FROM incident") == before["version"]
    assert await pool.fetchval(
        "SELECT count(*) FROM incident_event WHERE incident_id = $1 AND kind = 'routed'", stored.id
    )
    (console,) = await redis.xrange(settings.console_stream)
    assert orjson.loads(console[1][b"body"])["incident"]["ack_deadline_at"] is not None


async def _press_among_crowds(pool) -> uuid.UUID:
    """A button press 30 s ago at 37.5202, 126.92, with 2,000 open phone alerts and 50 presses
    from two hours ago right next to it; returns the press."""
    old = """INSERT INTO incident (id, source, trigger, location, received_at)
             SELECT gen_random_uuid(), $1, 'button',
                    ST_SetSRID(ST_MakePoint(126.92, 37.52), 4326)::geography,
                    now() - interval '2 hours'
             FROM generate_series(1, $2)"""
    await pool.execute(old, "app", 2000)
    await pool.execute(old, "button", 50)
    press: uuid.UUID = await pool.fetchval(
        """INSERT INTO incident (id, source, trigger, location, received_at)
           VALUES (gen_random_uuid(), 'button', 'button',
                   ST_SetSRID(ST_MakePoint(126.92, 37.5202), 4326)::geography,
                   now() - interval '30 seconds') RETURNING id"""
    )
    return press


async def test_a_phone_sos_links_with_a_press_nearby_reading_only_the_window(
    ctx, pool, redis, settings, make_member
):
    """A phone SOS 20 m and 30 s from a button press is linked with it, and the lookup reads the
    button presses of the time window, not every open incident: 2,000 open phone alerts and 50
    presses from two hours ago sit right next to it. (The plan PostgreSQL caches for the
    statement read all of them until migration 0007.)"""
    member = await make_member()
    press = await _press_among_crowds(pool)
    stored = await _incident(pool, member)
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)

    plan = await generic_plan(
        pool,
        routing._ROUTE_REPORTED_SQL,
        stored.id,
        60.0,
        "dispatch",
        settings.link_window_s,
        settings.link_radius_m,
        entry.outbox_id,
        settings.notify_deadline_s,
    )
    assert rows_read(plan, "incident") < 20

    await _handle(ctx, entry)
    linked = await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", stored.id)
    assert linked == press
    (console,) = await redis.xrange(settings.console_stream)
    assert orjson.loads(console[1][b"body"])["incident"]["emergency_id"] == str(press)


async def _press(pool, *, metres_north: float, seconds_ago: float) -> uuid.UUID:
    """A button press that far north of 37.52, 126.92 (where ``_incident`` raises an SOS)."""
    press: uuid.UUID = await pool.fetchval(
        "INSERT INTO incident (id, source, trigger, location, received_at) VALUES"
        " (gen_random_uuid(), 'button', 'button',"
        " ST_SetSRID(ST_MakePoint(126.92, 37.52 + $1 / 111000.0), 4326)::geography,"
        " now() - make_interval(secs => $2)) RETURNING id",
        metres_north,
        seconds_ago,
    )
    return press


@pytest.mark.parametrize("how", ["far", "old", "closed"])
async def test_a_phone_sos_is_not_linked_with_a_far_old_or_closed_press(
    ctx, pool, redis, settings, make_member, how
):
    """Just outside ``link_radius_m``, or just before ``link_window_s``, or already closed: a
    press is another emergency. Neither the dispatcher nor the intake links them."""
    near, recent = 20.0, 30.0
    press = await _press(
        pool,
        metres_north=settings.link_radius_m + 30 if how == "far" else near,
        seconds_ago=settings.link_window_s + 60 if how == "old" else recent,
    )
    if how == "closed":
        await pool.execute(
            "UPDATE incident SET status = 'false_alarm', closed_at = now() WHERE id = $1", press
        )
    stored = await _incident(pool, await make_member())
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    assert await _kinds(pool, stored.id) == ["reported", "routed"]
    linked = await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", stored.id)
    assert linked in (None, stored.id)
    (console,) = await redis.xrange(settings.console_stream)
    assert orjson.loads(console[1][b"body"])["incident"].get("emergency_id") != str(press)
    # At intake, nothing to link: the insert routes it itself (a press near would leave it).
    routed = await _sos_routed_at_intake(pool, settings, await make_member())
    assert routed.to_publish.summary is not None
    assert await _kinds(pool, routed.id) == ["reported", "routed"]
    assert await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", routed.id) in (
        None,
        routed.id,
    )


async def test_a_report_of_a_gone_incident_is_dropped(ctx, pool, redis, settings, make_member):
    stored = await _incident(pool, await make_member())
    await publish_pending(pool, redis, settings)
    (entry,) = await _entries(redis, settings)
    await pool.execute("DELETE FROM incident_event WHERE incident_id = $1", stored.id)
    await pool.execute("DELETE FROM incident WHERE id = $1", stored.id)
    await _handle(ctx, entry)
    assert await redis.xrange(settings.console_stream) == []
    assert await pool.fetchval("SELECT count(*) FROM dispatch_receipt") == 0


async def test_a_failing_gateway_is_retried_from_the_queue_and_delivered_once(
    ctx, pool, make_member, gateway
):
    """Two 503s, then a 2xx: three attempts, each its own claim and ``delivery_attempt`` row,
    one delivery, the notification's dedupe key as the Idempotency-Key."""
    member = await make_member()
    stored = await _incident(pool, member)
    key = f"{stored.id}:offer:volunteer:x"
    async with pool.acquire() as conn:
        await notifications.enqueue(
            conn,
            incident_id=stored.id,
            channel="push",
            target="volunteer:x",
            message={"a": 1},
            dedupe_key=key,
        )
    gateway.fail_first = 2
    for _ in range(3):
        assert await _send_due(ctx) == 1
        await pool.execute("UPDATE notification SET next_attempt_at = now()")  # skip the wait
    assert await _send_due(ctx) == 0
    rows = await pool.fetch(
        "SELECT attempt, ok, http_status FROM delivery_attempt ORDER BY attempt"
    )
    assert [(r["attempt"], r["ok"], r["http_status"]) for r in rows] == [
        (1, False, 503),
        (2, False, 503),
        (3, True, 200),
    ]
    assert [m["idempotency_key"] for m in gateway.received] == [key]
    assert await pool.fetchval("SELECT status FROM notification") == "sent"


async def test_a_client_error_is_not_retried(ctx, pool, make_member, gateway):
    member = await make_member()
    stored = await _incident(pool, member)
    async with pool.acquire() as conn:
        await notifications.enqueue(
            conn, incident_id=stored.id, channel="push", target="t", message={}, dedupe_key="k"
        )
    async with httpx.AsyncClient() as http:
        wrong_key = HttpGateway(
            channel="push", url=f"http://127.0.0.1:{gateway.port}/push", key="wrong", http=http
        )
        sender = Sender(pool=pool, settings=ctx.settings, gateways={"push": wrong_key})
        assert await sender.run_once() == 1
    assert gateway.rejected == 1
    assert await pool.fetchval("SELECT count(*) FROM delivery_attempt") == 1
    assert await pool.fetchval("SELECT status FROM notification") == "failed"
    assert (
        await pool.fetchval("SELECT count(*) FROM incident_event WHERE kind = 'notify_failed'") == 1
    )


def test_signatures_verify_and_a_tampered_body_does_not():
    import time

    header = sign("k", int(time.time()), b'{"a":1}')
    assert verify("k", header, b'{"a":1}')
    assert not verify("k", header, b'{"a":2}')
    assert not verify("other", header, b'{"a":1}')
    assert not verify("k", sign("k", int(time.time()) - 3600, b"x"), b"x")


async def test_two_deadline_sweepers_escalate_an_overdue_incident_once(pool, settings, make_member):
    member = await make_member()
    stored = await _incident(pool, member)
    await pool.execute(
        "UPDATE incident SET ack_deadline_at = now() - interval '1 second' WHERE id = $1", stored.id
    )
    counts = await asyncio.gather(
        routing.escalate_overdue(pool, settings), routing.escalate_overdue(pool, settings)
    )
    assert sorted(counts) == [0, 1]
    row = await pool.fetchrow(
        "SELECT escalation_level, ack_deadline_at > now() AS rearmed FROM incident WHERE id = $1",
        stored.id,
    )
    assert row["escalation_level"] == 1 and row["rearmed"]
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'kind' = 'escalated'") == 1
    )


async def test_console_appends_are_deduplicated_and_cursors_increase(redis, settings):
    first = await console_log.append(
        redis, settings, dedupe_key="o1", district_id=None, body={"x": 1}
    )
    dup = await console_log.append(
        redis, settings, dedupe_key="o1", district_id=None, body={"x": 1}
    )
    second = await console_log.append(redis, settings, dedupe_key="o2", district_id=None, body={})
    assert first is not None and dup is None and second is not None
    assert console_log.cursor_key(second) > console_log.cursor_key(first)
    replay, complete = await console_log.replay_after(redis, settings, first)
    assert complete and [e.cursor for e in replay] == [second]


# --- a phone's SOS routed at intake ---------------------------------------------------------


async def _sos_routed_at_intake(pool, settings, member, lat=37.52, lon=126.92, insert=None):
    return await insert_incident(
        insert or pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=lat, lon=lon),
        publish=True,
        ack_deadline_s=settings.ack_deadline_s,
        route=True,
        link_window_s=settings.link_window_s,
        link_radius_m=settings.link_radius_m,
    )


async def _kinds(pool, incident_id) -> list[str]:
    rows = await pool.fetch(
        "SELECT kind FROM incident_event WHERE incident_id = $1 ORDER BY id", incident_id
    )
    return [r["kind"] for r in rows]


async def _receipted(pool, outbox_id) -> bool:
    return bool(
        await pool.fetchval("SELECT count(*) FROM dispatch_receipt WHERE outbox_id = $1", outbox_id)
    )


async def test_an_sos_with_only_the_consoles_to_tell_is_routed_by_its_publish(
    ctx, pool, redis, settings, make_member, make_district
):
    """No guardians, no volunteer near, no press to link: the insert writes the ``routed``
    event and the publish appends the console message a dispatcher would have appended (its
    summary read after routing); nothing goes to the dispatchers, and the receipt follows in
    the API's next batch."""
    await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    member = await make_member()
    stored = await _sos_routed_at_intake(pool, settings, member)
    assert stored.to_publish.summary is not None
    assert await _kinds(pool, stored.id) == ["reported", "routed"]
    channel = "SELECT data->>'channel' FROM incident_event WHERE incident_id = $1 AND kind = $2"
    assert await pool.fetchval(channel, stored.id, "routed") == "district:A"
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    await relay.publish(stored.to_publish)
    await relay.publish(stored.to_publish)  # a second publish appends nothing
    assert await redis.xlen(settings.stream_incidents) == 0
    (console,) = await redis.xrange(settings.console_stream)
    assert console[1][b"district"].decode() == stored.to_publish.summary["district_id"]
    shown = orjson.loads(console[1][b"body"])

    # What a dispatcher appends for the same row, routed by it.
    async with pool.acquire() as conn:
        summary = await incident_summary(conn, stored.id)
    fields = stream_fields(
        stored.outbox_id,
        stored.to_publish.topic,
        stored.to_publish.payload,
        stored.to_publish.created_at.timestamp(),
    )
    entry = routing.parse_entry({k.encode(): v for k, v in fields.items()})
    assert shown == console_log.incident_message(
        entry.kind, entry.payload, summary, entry.committed_at
    )
    assert shown["incident"]["district_code"] == "A" and shown["incident"]["ack_deadline_at"]

    assert not await _receipted(pool, stored.outbox_id)
    assert await relay.flush_receipts() == 2
    assert await _receipted(pool, stored.outbox_id)
    assert await relay.flush_receipts() == 0


async def test_an_sos_with_guardians_to_text_is_left_to_the_dispatchers(
    ctx, pool, redis, settings, make_member, gateway
):
    member = await make_member()
    await _guardian(pool, member)
    stored = await _sos_routed_at_intake(pool, settings, member)
    assert stored.to_publish.summary is None
    assert await _kinds(pool, stored.id) == ["reported"]
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    await relay.publish(stored.to_publish)
    assert await redis.xlen(settings.console_stream) == 0
    assert await relay.flush_receipts() == 0
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    assert await _kinds(pool, stored.id) == ["reported", "routed", "notified"]
    assert [m["path"] for m in gateway.received] == ["/sms"]
    assert await redis.xlen(settings.console_stream) == 1


async def test_an_sos_with_a_volunteer_near_is_shown_at_once_and_offered_by_a_dispatcher(
    ctx, pool, redis, settings, make_member, make_staff, gateway
):
    """The console message leaves with the publish; the dispatcher offers the incident to the
    volunteer near her, writes the receipt, and shows nothing twice."""
    from app.dispatch import presence

    volunteer = await make_staff("volunteer", name="V", badge_number="B-3")
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.521, lon=126.921)
    stored = await _sos_routed_at_intake(pool, settings, await make_member())
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    await relay.publish(stored.to_publish)
    assert await redis.xlen(settings.console_stream) == 1
    assert await relay.flush_receipts() == 0  # the dispatcher's to write
    (entry,) = await _entries(redis, settings)
    await _routed_and_offered(ctx, pool, gateway, entry, stored.id, volunteer.id)
    assert await _kinds(pool, stored.id) == ["reported", "routed", "volunteers_offered", "notified"]
    assert await _receipted(pool, stored.outbox_id)
    assert await redis.xlen(settings.console_stream) == 1


async def test_an_sos_near_a_press_is_left_to_the_dispatchers_reading_only_the_window(
    ctx, pool, redis, settings, make_member
):
    """A button press 20 m and 30 s away: the insert does not route the SOS (the dispatcher
    links the two), and its lookup reads the presses of the time window, not every open
    incident: 2,000 open phone alerts and 50 presses from two hours ago sit right next to it."""
    press = await _press_among_crowds(pool)
    member = await make_member()
    probe = PlanProbe(pool)
    with pytest.raises(Measured):
        await _sos_routed_at_intake(pool, settings, member, insert=probe)
    assert rows_read(probe.plan, "incident") < 20

    stored = await _sos_routed_at_intake(pool, settings, member)
    assert stored.to_publish.summary is None
    assert await _kinds(pool, stored.id) == ["reported"]
    await OutboxRelay(pool=pool, redis=redis, settings=settings).publish(stored.to_publish)
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    linked = await pool.fetchval("SELECT emergency_id FROM incident WHERE id = $1", stored.id)
    assert linked == press


@pytest.mark.parametrize("redis_lost", [False, True], ids=["receipt-lost", "redis-lost"])
async def test_an_sos_routed_at_intake_but_never_receipted_is_reconciled_once(
    ctx, pool, redis, settings, make_member, redis_lost
):
    """The API process died before its receipt batch: the reconciler publishes the row again
    and a dispatcher routes it, adding no second ``routed`` event and no second console
    message. If Redis lost the console log too, the message is shown again."""
    stored = await _sos_routed_at_intake(pool, settings, await make_member())
    await OutboxRelay(pool=pool, redis=redis, settings=settings).publish(stored.to_publish)
    if redis_lost:
        await redis.flushdb()
    now = settings.model_copy(update={"relay_reconcile_after_s": 0.0})
    assert await republish_unrouted(pool, now) == 1
    assert await publish_pending(pool, redis, settings) == 1
    (entry,) = await _entries(redis, settings)
    await _handle(ctx, entry)
    await _handle(ctx, entry)
    assert await _receipted(pool, stored.outbox_id)
    assert await _kinds(pool, stored.id) == ["reported", "routed"]
    (console,) = await redis.xrange(settings.console_stream)
    assert orjson.loads(console[1][b"body"])["incident"]["id"] == str(stored.id)
    assert await republish_unrouted(pool, now) == 0
