"""The receiver over real sockets, against real PostGIS and Redis: what each event becomes,
the answers (ACK, *ACK, NAK, DUH), retries acted on once, clock drift, supervision, and a bad
connection never stalling a good one."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from app.devices import health
from app.receiver import protocol as dc09
from tests.receiver.conftest import panel


async def _incidents(pool):
    return await pool.fetch(
        "SELECT id, source, trigger, silent, duress, flags, safe_place_id, device_id"
        " FROM incident ORDER BY received_at"
    )


async def test_a_plain_panic_is_an_incident_at_the_store_through_the_outbox(running, site, pool):
    p = panel(running)
    answer = await p.panic()
    await p.close()
    assert answer.kind == "ACK" and answer.attempts == 1
    assert answer.raw == dc09.frame(b'"ACK"0001L0#1234[]')
    (inc,) = await _incidents(pool)
    assert (inc["source"], inc["trigger"], inc["silent"]) == ("sensor", "alarm_panic", False)
    assert str(inc["safe_place_id"]) == str(site.place_id)
    assert str(inc["device_id"]) == site.plain["device_id"]
    topics = await pool.fetch("SELECT topic FROM outbox WHERE incident_id = $1", inc["id"])
    assert [t["topic"] for t in topics] == ["incident.created"]
    log = await pool.fetch("SELECT code, action, incident_id FROM alarm_event")
    assert [(r["code"], r["action"], r["incident_id"]) for r in log] == [
        ("sia:PA", "incident", inc["id"])
    ]


async def test_a_retry_after_a_lost_ack_is_acknowledged_and_acted_on_once(running, site, pool):
    p = panel(running)
    answer = await p.send("SIA-DCS", "Nri1/PA501", drop_first=1)
    assert answer.kind == "ACK" and answer.attempts == 2
    # And the very same bytes once more (the ACK was lost on the way back).
    again = await p._exchange(p.sent[-1])
    await p.close()
    assert b'"ACK"' in again
    (inc,) = await _incidents(pool)
    assert "repeated" not in inc["flags"]  # a retry, not a second press
    assert await pool.fetchval("SELECT count(*) FROM alarm_event") == 1
    assert running.receiver.stats.retries == 1


async def test_an_encrypted_panic_gets_an_encrypted_ack(running, site, pool):
    p = panel(running, "CEA")
    answer = await p.contact_id(1, 120)
    await p.close()
    assert answer.kind == "*ACK"
    plain = dc09.decrypt(dc09.parse_key("AAAAAAAAAAAAAAAA"), answer.raw.split(b"[")[1][:-1])
    assert plain is not None and b"]_" in plain
    (inc,) = await _incidents(pool)
    assert inc["trigger"] == "alarm_panic"


async def test_a_drifting_clock_gets_a_nak_with_our_time_and_the_panel_recovers(
    running, site, pool
):
    p = panel(running, "CEA", clock_offset_s=-120.0)
    answer = await p.panic()
    await p.close()
    assert answer.kind == "*ACK" and answer.attempts == 2
    assert abs(p.clock_offset_s) < 5  # set from the NAK's timestamp
    assert running.receiver.stats.naks == 1
    assert len(await _incidents(pool)) == 1


async def test_the_window_is_per_account(running, site, pool):
    await pool.execute("UPDATE alarm_account SET window_past_s = 600 WHERE account = 'CEA'")
    p = panel(running, "CEA", clock_offset_s=-120.0)
    answer = await p.panic()
    await p.close()
    assert answer.kind == "*ACK" and answer.attempts == 1


async def test_a_stale_encrypted_message_is_answered_nak_and_never_acted_on(running, site, pool):
    key = dc09.parse_key("AAAAAAAAAAAAAAAA")
    old = datetime(2020, 1, 1, tzinfo=UTC)
    line = dc09.build("SIA-DCS", 7, "CEA", "Nri1/PA501", key=key, at=old)
    reply = await running.receiver.handle(line)
    assert reply is not None and reply.startswith(b"\n") and b'"NAK"0000R0L0A0[]_' in reply
    assert dc09.parse_timestamp(reply.rstrip(b"\r")) is not None
    assert await _incidents(pool) == []


async def test_what_we_cannot_process_is_answered_duh(running, site, pool):
    key = dc09.parse_key("AAAAAAAAAAAAAAAA")
    cases = {
        "unknown account": dc09.build("SIA-DCS", 1, "9999", "Nri1/PA501"),
        "wrong key": dc09.build("SIA-DCS", 2, "CEA", "Nri1/PA501", key=b"B" * 16),
        "plain for a keyed account": dc09.build("SIA-DCS", 3, "CEA", "Nri1/PA501"),
        "encrypted for a plain account": dc09.build("SIA-DCS", 4, "1234", "Nri1/PA501", key=key),
        "unknown code": dc09.build("ADM-CID", 5, "1234", "1999 00 000"),
    }
    for name, line in cases.items():
        reply = await running.receiver.handle(line)
        assert reply is not None and b'"DUH"' in reply, name
    assert await _incidents(pool) == []
    # The unknown code is kept on the account's log.
    (row,) = await pool.fetch("SELECT code, action FROM alarm_event")
    assert (row["code"], row["action"]) == ("cid:999", "unknown")


async def test_a_bad_crc_or_length_is_dropped(running, site):
    line = dc09.build("SIA-DCS", 1, "1234", "Nri1/PA501")
    assert await running.receiver.handle(line.replace(b"PA", b"PB")) is None
    assert await running.receiver.handle(line[:5] + b"9" + line[6:]) is None


async def test_duress_is_silent_and_escalates_like_a_stores_duress(running, site, pool):
    reply = await running.receiver.handle(dc09.build("ADM-CID", 1, "1234", "1121 01 002"))
    assert reply is not None and b'"ACK"' in reply
    (inc,) = await _incidents(pool)
    assert (inc["trigger"], inc["silent"], inc["duress"]) == ("alarm_duress", True, True)
    kinds = await pool.fetch(
        "SELECT payload->>'kind' AS kind FROM outbox WHERE incident_id = $1 ORDER BY id", inc["id"]
    )
    assert [k["kind"] for k in kinds] == ["reported", "duress"]


async def test_a_panic_then_a_duress_from_the_same_panel_is_one_emergency(running, site, pool):
    await running.receiver.handle(dc09.build("SIA-DCS", 1, "1234", "Nri1/PA501"))
    await running.receiver.handle(dc09.build("SIA-DCS", 2, "1234", "NHA002"))
    (inc,) = await _incidents(pool)
    assert inc["duress"] and inc["silent"]


async def test_fire_and_medical_are_marked_for_their_agency(running, site, pool):
    await running.receiver.handle(dc09.build("ADM-CID", 1, "1234", "1110 00 129"))
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    await running.receiver.handle(dc09.build("SIA-DCS", 2, "1234", "NMA001"))
    rows = await _incidents(pool)
    assert [(r["trigger"], list(r["flags"])) for r in rows] == [
        ("alarm_fire", ["agency_fire"]),
        ("alarm_medical", ["agency_medical"]),
    ]


async def test_burglary_at_a_store_is_an_intrusion_incident(running, site, pool):
    await running.receiver.handle(dc09.build("ADM-CID", 1, "1234", "1130 01 005"))
    (inc,) = await _incidents(pool)
    assert inc["trigger"] == "alarm_intrusion"


async def _health(pool):
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1 ORDER BY id", health.TOPIC_DEVICE_HEALTH
    )
    return [(r["payload"]["event"], r["payload"].get("data", {}).get("trouble")) for r in rows]


async def test_a_trouble_shows_on_the_consoles_once_and_its_restore_closes_it(running, site, pool):
    for seq in (1, 2):  # a status report repeats it: one message
        await running.receiver.handle(dc09.build("ADM-CID", seq, "1234", "1301 00 000"))
    await running.receiver.handle(dc09.build("SIA-DCS", 3, "1234", "NYT000"))
    assert await _health(pool) == [("trouble", "ac_loss"), ("trouble", "low_battery")]
    (dev,) = await health.console_devices(
        pool, city_wide=False, district_ids=frozenset({site.district_id})
    )
    assert dev["problems"] == ["trouble"] and dev["troubles"] == ["ac_loss", "low_battery"]
    assert dev["district_code"] == "A" and dev["store"]["phone"] == "02-111-2222"
    await running.receiver.handle(dc09.build("ADM-CID", 4, "1234", "3301 00 000"))
    await running.receiver.handle(dc09.build("SIA-DCS", 5, "1234", "NYR000"))
    assert (await _health(pool))[2:] == [
        ("trouble_restored", "ac_loss"),
        ("trouble_restored", "low_battery"),
    ]
    assert await health.console_devices(pool, city_wide=True, district_ids=frozenset()) == []


async def test_supervision_a_silent_account_goes_offline_and_its_next_message_clears_it(
    running, site, pool, settings
):
    await pool.execute("UPDATE device SET offline_after_s = 0.5")
    await pool.execute("UPDATE device SET created_at = now() - interval '1 minute'")
    p = panel(running)
    assert (await p.link_test()).kind == "ACK"
    # The other account has been silent past its 0.5 s interval since it was created (the
    # default setting is 900 s); this one was just heard.
    assert await health.report_offline(pool, settings) == 1
    await asyncio.sleep(0.7)
    assert await health.report_offline(pool, settings) == 1
    assert await health.report_offline(pool, settings) == 0  # once per outage
    offline = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1", health.TOPIC_DEVICE_OFFLINE
    )
    assert {r["payload"]["offline_after_s"] for r in offline} == {0.5}
    assert (await p.contact_id(1, 602, 0, 0)).kind == "ACK"  # the periodic test
    await p.close()
    assert await _health(pool) == [("online", None)]
    assert await pool.fetchval("SELECT last_test_at IS NOT NULL FROM device WHERE id = $1::uuid",
                               site.plain["device_id"])  # fmt: skip


async def test_several_messages_on_one_connection_with_trailing_nuls(running, site, pool):
    reader, writer = await asyncio.open_connection("127.0.0.1", running.tcp)
    lines = [
        dc09.build("NULL", 1, "1234", ""),
        dc09.build("ADM-CID", 2, "1234", "1602 00 000"),
        dc09.build("SIA-DCS", 3, "1234", "Nri1/PA501"),
    ]
    writer.write(b"\x00".join(lines) + b"\x00")  # all at once, NUL after each CR
    await writer.drain()
    answers = [await asyncio.wait_for(reader.readuntil(b"\r"), 5) for _ in lines]
    writer.close()
    assert [a.split(b'"')[2][:4] for a in answers] == [b"0001", b"0002", b"0003"]
    assert all(b'"ACK"' in a for a in answers)


async def test_udp_panic(running, site, pool):
    p = panel(running, udp=True)
    answer = await p.panic()
    assert answer.kind == "ACK"
    assert len(await _incidents(pool)) == 1


async def test_slowloris_and_a_1_mb_line_are_cut_and_never_stall_another_connection(
    running, site, pool
):
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", running.tcp)
    slow_w.write(b"\n1234")  # and then nothing
    await slow_w.drain()
    big_r, big_w = await asyncio.open_connection("127.0.0.1", running.tcp)
    big_w.write(b"\n" + b"A" * (1 << 20))
    p = panel(running)
    answer = await p.panic()  # meanwhile, a real panel is answered
    assert answer.kind == "ACK" and answer.attempts == 1
    with contextlib.suppress(ConnectionResetError):  # cut with our 1 MB unread: a reset
        assert await asyncio.wait_for(big_r.read(), 5) == b""  # cut
    assert await asyncio.wait_for(slow_r.read(), 5) == b""  # cut after the line timeout
    assert running.server.stats.cut_slow == 1 and running.server.stats.cut_long == 1
    for w in (slow_w, big_w):
        w.close()
    await p.close()
