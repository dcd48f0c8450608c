"""Fuzzing the receiver's bad-input paths (Hypothesis).

The frame layer (``parse_frame``, decryption, the event mapping) never raises, whatever the
line: wrong CRC, wrong length, truncated, bad hex, a wrong key, 1 MB lines, random bytes; a
frame it accepts always has a right CRC and length. ``make test`` runs
``ANSIM_FUZZ_EXAMPLES`` (default 5,000) inputs; ``make fuzz-receiver`` runs 100,000.

Then through the real receiver (database and sockets): mutated and replayed frames are
answered ``NAK``/``DUH``/``ACK`` or dropped, never raise, and a connection spewing them never
stalls a panel on another connection."""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.receiver import events as ev
from app.receiver import protocol as dc09
from tests.receiver.conftest import KEY, panel

EXAMPLES = int(os.environ.get("ANSIM_FUZZ_EXAMPLES", "5000"))
KEYS = [None, dc09.parse_key(KEY), b"B" * 16, b"C" * 24, b"D" * 32]
MEGABYTE = b"\n" + b"7" * (1 << 20) + b"\r"

_hex = st.text("0123456789ABCDEF", min_size=3, max_size=16)
_data = st.one_of(
    st.sampled_from(["Nri1/PA501", "NHA002", "1120 01 001", "3301 00 000", "", "NRP000"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    token = draw(st.sampled_from(["SIA-DCS", "ADM-CID", "NULL", "ACK", "SIA-DC"]))
    key = draw(st.sampled_from(KEYS))
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**8)))
    return dc09.build(
        token,
        draw(st.integers(0, 9999)),
        draw(_hex),
        draw(_data),
        prefix=draw(st.text("0123456789ABCDEF", max_size=6)),
        receiver=draw(st.none() | st.text("0123456789ABCDEF", min_size=1, max_size=6)),
        key=key,
        at=at,
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    line = draw(frames())
    kind = draw(st.sampled_from(
        ["none", "flip", "truncate", "crc", "length", "insert", "garbage", "hexbody", "nul",
         "megabyte", "random"]
    ))  # fmt: skip
    i = draw(st.integers(0, len(line) - 1))
    if kind == "flip":
        return line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1 :]
    if kind == "truncate":
        return line[:i]
    if kind == "crc":
        return line[:1] + draw(st.binary(min_size=4, max_size=4)) + line[5:]
    if kind == "length":
        return (
            line[:5]
            + draw(st.text("0123456789ABCDEFG ", min_size=4, max_size=4)).encode()
            + line[9:]
        )
    if kind == "insert":
        return line[:i] + draw(st.binary(min_size=1, max_size=20)) + line[i:]
    if kind == "garbage":
        return line + draw(st.binary(max_size=64))
    if kind == "hexbody":  # a frame re-framed with a right CRC around a broken ciphertext
        body = line[9:-1]
        return dc09.frame(body[: max(i - 9, 0)] + b"ZZ" + body[max(i - 9, 0) :])
    if kind == "nul":
        return line + b"\x00" * draw(st.integers(1, 4))
    if kind == "megabyte":
        return MEGABYTE
    if kind == "random":
        return draw(st.binary(max_size=300))
    return line


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(line=mutated(), key=st.sampled_from(KEYS))
def test_the_frame_layer_never_raises_and_accepts_only_right_crc_and_length(line, key):
    parsed = dc09.parse_frame(line)
    if isinstance(parsed, dc09.BadFrame):
        assert parsed.reason
        return
    # Accepted: the CRC and the length over the body are right.
    stripped = line.rstrip(b"\x00").removeprefix(b"\n").removesuffix(b"\r")
    quote = stripped.find(b'"')
    body = stripped[quote:]
    header = stripped[:quote]
    assert int(header[-4:], 16) == len(body)
    crc = int(header[:4], 16) if quote == 8 else int.from_bytes(header[:2], "big")
    assert crc == dc09.crc16(body)
    content = dc09.open_content(parsed, key)
    if content is not None:
        ev.events_of(parsed.kind, content.data)
        dc09.ack(parsed, key)


async def test_mutated_and_replayed_frames_through_the_receiver_never_raise(running, site, pool):
    rng = random.Random(20)
    key = dc09.parse_key(KEY)
    now = datetime.now(UTC)
    good = [
        dc09.build("SIA-DCS", 1, "1234", "Nri1/PA501"),
        dc09.build("ADM-CID", 2, "CEA", "1301 00 000", key=key, at=now),
        dc09.build("NULL", 3, "CEA", "", key=key, at=now),
        dc09.build("SIA-DCS", 4, "CEA", "NYT000", key=key, at=now - timedelta(hours=1)),
        dc09.build("SIA-DCS", 5, "CEA", "NYT000", key=b"B" * 16, at=now),
    ]
    answers: dict[str, int] = {}
    n = max(EXAMPLES // 10, 200)
    for _ in range(n):
        line = rng.choice(good)
        roll = rng.random()
        if roll < 0.3:  # replayed as is
            pass
        elif roll < 0.6:
            j = rng.randrange(len(line))
            line = line[:j] + bytes([line[j] ^ rng.randrange(1, 256)]) + line[j + 1 :]
        elif roll < 0.8:
            line = line[: rng.randrange(len(line))]
        else:
            line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120)))
        reply = await running.receiver.handle(line)
        kind = "dropped" if reply is None else reply.split(b'"')[1].decode()
        answers[kind] = answers.get(kind, 0) + 1
    print(f"\n{n} lines through the receiver: {answers}")
    assert set(answers) <= {"ACK", "*ACK", "NAK", "DUH", "dropped"}
    assert answers.get("NAK") and answers.get("DUH") and answers.get("dropped")
    # Replays acted on once: one incident, one trouble message.
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'event' = 'trouble'") == 1
    )


async def test_a_connection_spewing_garbage_never_stalls_a_panel_on_another(running, site):
    rng = random.Random(7)

    async def spew() -> None:
        _r, w = await asyncio.open_connection("127.0.0.1", running.tcp)
        line = dc09.build("SIA-DCS", 1, "1234", "Nri1/PA501")
        try:
            for _ in range(2000):
                j = rng.randrange(len(line))
                w.write(line[:j] + bytes([line[j] ^ 0x55]) + line[j + 1 :])
                if rng.random() < 0.05:
                    await w.drain()
            await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    spewer = asyncio.create_task(spew())
    p = panel(running)
    worst = 0.0
    for _ in range(20):
        started = time.monotonic()
        assert (await p.link_test()).kind == "ACK"
        worst = max(worst, time.monotonic() - started)
    await p.close()
    await spewer
    print(f"\nworst link-test round trip beside the spewing connection: {worst * 1000:.0f} ms")
    assert worst < 1.0
