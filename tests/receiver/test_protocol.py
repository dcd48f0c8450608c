"""The DC-09 frame layer against the published vectors (../shared/specs/STANDARDS.md), byte for
byte: CRC-16/ARC, the hex length (with the true values where a public vector's is wrong),
parsing, the *NULL vector's decryption, our answers, and Contact ID's checksum."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.receiver import events as ev
from app.receiver import protocol as dc09
from tests.receiver import vectors

#: Vectors whose CRC and length are right as published (real captures and unit tests).
GOOD = ["78FC003B", "F2EA003B", "BB86002C", "3C3B0025", "7A7C0075", "F4D20029", "96ED0016",
        "E4410025", "76D80055"]  # fmt: skip
#: Published with a wrong field: (the header as published, the true header, what is wrong).
FIXED = [
    ("E5D50078", "E5D50034", "wrong length"),
    ("87CD0037", "9692004B", "wrong crc"),  # the file's CRC and length are both wrong
    ("57150047", "5715002F", "wrong length"),  # "0047" read as decimal: 0x2F is right
    ("5B090059", "5B09005B", "wrong length"),
]


def _body(v: bytes) -> bytes:
    return v[8:]


@pytest.mark.parametrize("header", GOOD)
def test_published_crc_and_length_are_what_we_compute(header):
    v = vectors.frames()[header]
    body = _body(v)
    assert f"{dc09.crc16(body):04X}" == header[:4]
    assert dc09.crc16(body) == dc09.crc16_arc(body)  # table and bitwise agree
    assert int(header[4:], 16) == len(body)
    assert dc09.frame(body) == b"\n" + v + b"\r"


@pytest.mark.parametrize(("published", "true", "reason"), FIXED)
def test_a_vector_with_a_wrong_field_is_refused_and_its_true_header_accepted(
    published, true, reason
):
    v = vectors.frames()[published]
    bad = dc09.parse_frame(b"\n" + v + b"\r")
    assert isinstance(bad, dc09.BadFrame)
    assert bad.reason == (reason if published != "87CD0037" else "wrong length")
    assert not bad.answerable  # dropped, not answered: the panel retries
    fixed = true.encode() + _body(v)
    assert dc09.frame(_body(v)) == b"\n" + fixed + b"\r"
    assert isinstance(dc09.parse_frame(b"\n" + fixed + b"\r"), dc09.Frame)


def test_crc_16_arc_check_value_and_the_dc07_table_typo():
    assert dc09.crc16_arc(b"123456789") == 0xBB3D  # the catalogue's check value
    # DC-07 prints entry 101 (counting from 1) as 0xBE01, a typo for 0xEB01.
    assert dc09._TABLE[100] == 0xEB01


def test_parsing_the_real_captures():
    f = dc09.parse_frame(b"\n" + vectors.frames()["78FC003B"] + b"\r")
    assert isinstance(f, dc09.Frame)
    assert (f.token, f.seq, f.receiver, f.prefix, f.account) == (
        "SIA-DCS", "0001", None, "", "22334455",
    )  # fmt: skip
    content = dc09.open_content(f, None)
    assert content is not None
    assert content.data == b"#22334455|NCQ1"
    assert content.sent_at == datetime(2020, 2, 9, 14, 33, 53, tzinfo=UTC)

    f = dc09.parse_frame(b"\n" + vectors.frames()["F4D20029"] + b"\r")
    assert isinstance(f, dc09.Frame)
    assert (f.receiver, f.prefix, f.account) == ("F3", "77", "1234")

    # The panic with GPS x-data, once its length is fixed.
    v = vectors.frames()["5B090059"]
    f = dc09.parse_frame(dc09.frame(_body(v)))
    assert isinstance(f, dc09.Frame)
    content = dc09.open_content(f, None)
    assert content is not None
    assert content.xdata == {"X": b"006E07.7777777", "Y": b"49N06.6666666"}
    (panic,) = ev.events_of(f.kind, content.data)
    assert panic.action is ev.Action.incident and panic.alarm == ev.PANIC
    assert (panic.zone, panic.area) == ("501", "1")


def test_trailing_nul_and_a_missing_lf_are_tolerated():
    v = vectors.frames()["F2EA003B"]
    for line in (b"\n" + v + b"\r\x00", v + b"\r", b"\n" + v + b"\r\x00\x00", b"\n" + v):
        assert isinstance(dc09.parse_frame(line), dc09.Frame)


def test_a_binary_crc_is_accepted_too():
    body = _body(vectors.frames()["F2EA003B"])
    line = b"\n" + dc09.crc16(body).to_bytes(2, "big") + b"%04X" % len(body) + body + b"\r"
    assert isinstance(dc09.parse_frame(line), dc09.Frame)


def test_the_encrypted_null_vector_decrypts_with_its_key():
    v = vectors.frames()["76D80055"]
    f = dc09.parse_frame(b"\n" + v + b"\r")
    assert isinstance(f, dc09.Frame)
    assert f.encrypted and f.kind == "NULL" and f.account == "AAAB"
    key = dc09.parse_key("AAAAAAAAAAAAAAAA")
    assert dc09.decrypt(key, f.body) == b"ppppppppppp]_18:24:52,07-05-2020"
    content = dc09.open_content(f, key)
    assert content is not None  # no "|" after the pad: tolerated
    assert content.data == b""
    assert content.sent_at == datetime(2020, 7, 5, 18, 24, 52, tzinfo=UTC)
    # The same key as 32 hex digits.
    assert dc09.parse_key("41" * 16) == key
    # A wrong key gives garbage without a "]", or nothing readable.
    assert dc09.open_content(f, b"B" * 16) is None


def test_keys_of_every_size_round_trip():
    for text in ("K" * 16, "K" * 24, "K" * 32, "ab" * 16, "ab" * 24, "ab" * 32):
        key = dc09.parse_key(text)
        line = dc09.build("SIA-DCS", 12, "1234", "Nri1/PA501", key=key)
        f = dc09.parse_frame(line)
        assert isinstance(f, dc09.Frame) and f.token == "*SIA-DCS"
        content = dc09.open_content(f, key)
        assert content is not None and content.data == b"#1234|Nri1/PA501"
        assert content.sent_at is not None
    for bad in ("short", "K" * 17, "zz" * 16):
        with pytest.raises(ValueError):
            dc09.parse_key(bad, hex_key=True if bad == "zz" * 16 else None)


def test_our_answers_match_the_computed_acks_byte_for_byte():
    ack_0000, duh_0000, ack_2233 = vectors.acks()
    f = dc09.parse_frame(b"\n" + vectors.frames()["F2EA003B"] + b"\r")
    assert isinstance(f, dc09.Frame)
    assert dc09.ack(f) == ack_0000
    assert dc09.duh(f.seq, f.receiver, f.prefix, f.account) == duh_0000
    g = dc09.parse_frame(b"\n" + vectors.frames()["78FC003B"] + b"\r")
    assert isinstance(g, dc09.Frame)
    assert dc09.ack(g) == ack_2233


def test_a_nak_carries_our_time_and_matches_the_published_naks():
    for header in ("3C3B0025", "E4410025"):
        v = vectors.frames()[header]
        at = dc09.parse_timestamp(v)
        assert at is not None
        assert dc09.nak(at) == b"\n" + v + b"\r"


def test_the_encrypted_ack_echoes_the_route_and_carries_a_timestamp():
    key = dc09.parse_key("AAAAAAAAAAAAAAAA")
    f = dc09.parse_frame(dc09.build("SIA-DCS", 42, "ABC", "Nri1/PA501", prefix="12",
                                    receiver="3", key=key))  # fmt: skip
    assert isinstance(f, dc09.Frame)
    at = datetime(2026, 12, 7, 15, 0, 0, tzinfo=UTC)
    answer = dc09.ack(f, key, now=at)
    assert answer.startswith(b"\n") and b'"*ACK"0042R3L12#ABC[' in answer
    reply = dc09.parse_frame(answer)
    assert isinstance(reply, dc09.BadFrame) and reply.reason == "unknown token"  # not a panel's
    plain = dc09.decrypt(key, answer[answer.index(b"[") + 1 : -1])
    assert plain is not None and plain.endswith(b"|]_15:00:00,12-07-2026")
    assert len(plain) % 16 == 0


def test_the_timestamp_window_is_plus_20_minus_40_seconds():
    now = datetime(2026, 12, 7, 15, 0, 0, tzinfo=UTC)
    from datetime import timedelta

    def stale(offset: float) -> bool:
        return dc09.stale(now + timedelta(seconds=offset), now, past_s=40, future_s=20)

    assert not stale(0) and not stale(20) and not stale(-40)
    assert stale(21) and stale(-41)
    assert dc09.stale(None, now, past_s=40, future_s=20)


@pytest.mark.parametrize("message", vectors.contact_id_messages())
def test_contact_id_checksums(message):
    assert ev.contact_id_checksum_ok(message)
    wrong = message[:-1] + str((int(message[-1]) + 1) % 10)
    assert not ev.contact_id_checksum_ok(wrong)


def test_contact_id_messages_become_events():
    by_msg = {m: ev.contact_id(ev.contact_id_from_dtmf(m).encode())[0]  # type: ignore[union-attr]
              for m in vectors.contact_id_messages()}  # fmt: skip
    actions = [(e.code, e.qualifier, e.action) for e in by_msg.values()]
    assert actions == [
        ("cid:131", "1", ev.Action.incident),
        ("cid:131", "3", ev.Action.log),  # an alarm's restore: a dispatcher closes it
        ("cid:401", "1", ev.Action.arming),  # an opening by user 003: disarmed
        ("cid:120", "1", ev.Action.incident),
        ("cid:121", "1", ev.Action.incident),
        ("cid:602", "1", ev.Action.test),
    ]
    assert by_msg["1234181121010023"].alarm == ev.DURESS
    assert by_msg["1234181120010010"].alarm == ev.PANIC
    assert (by_msg["1234181401020035"].arming, by_msg["1234181401020035"].zone) == (
        "disarmed",
        "003",
    )


@pytest.mark.parametrize(
    ("data", "action", "extra"),
    [
        ("1120 01 001", ev.Action.incident, ev.PANIC),
        ("1121 01 002", ev.Action.incident, ev.DURESS),
        ("1122 01 001", ev.Action.incident, ev.SILENT_PANIC),
        ("1123 01 001", ev.Action.incident, ev.PANIC),
        ("1130 01 005", ev.Action.incident, ev.INTRUSION),
        ("1110 00 129", ev.Action.incident, ev.FIRE),
        ("1100 00 001", ev.Action.incident, ev.MEDICAL),
        ("1301 00 000", ev.Action.trouble, "ac_loss"),
        ("3301 00 000", ev.Action.restore, "ac_loss"),
        ("1302 00 000", ev.Action.trouble, "low_battery"),
        ("1350 00 000", ev.Action.trouble, "communication"),
        ("3354 00 000", ev.Action.restore, "communication"),
        ("1602 00 000", ev.Action.test, None),
        ("1137 01 003", ev.Action.tamper, None),
        ("1401 01 003", ev.Action.arming, "disarmed"),  # opening by user 3
        ("3401 01 003", ev.Action.arming, "away"),  # closing by user 3
        ("3407 01 000", ev.Action.arming, "away"),  # remote arm
        ("3441 01 003", ev.Action.arming, "night"),  # armed stay
        ("1441 01 003", ev.Action.arming, "disarmed"),
        ("6401 01 003", ev.Action.log, None),  # a status report changes nothing
        ("1999 00 000", ev.Action.unknown, None),
    ],
)
def test_contact_id_mapping(data, action, extra):
    _check(ev.contact_id(f"#1234|{data}".encode()), action, extra)


def _check(found: list[ev.PanelEvent], action: ev.Action, extra: object) -> None:
    (e,) = found
    assert e.action is action
    if isinstance(extra, ev.Alarm):
        assert e.alarm == extra
    elif action is ev.Action.arming:
        assert e.arming == extra
    elif extra is not None:
        assert e.trouble == extra


@pytest.mark.parametrize(
    ("data", "action", "extra"),
    [
        ("Nri1/PA501", ev.Action.incident, ev.PANIC),
        ("NHA002", ev.Action.incident, ev.DURESS),
        ("Nri1/BA005", ev.Action.incident, ev.INTRUSION),
        ("NFA001", ev.Action.incident, ev.FIRE),
        ("NMA001", ev.Action.incident, ev.MEDICAL),
        ("NYT000", ev.Action.trouble, "low_battery"),
        ("NYR000", ev.Action.restore, "low_battery"),
        ("NAT000", ev.Action.trouble, "ac_loss"),
        ("NAR000", ev.Action.restore, "ac_loss"),
        ("Nri0/RP0000", ev.Action.test, None),
        ("Nri1/CL501", ev.Action.arming, "away"),
        ("Nri1/OP501", ev.Action.arming, "disarmed"),
        ("Nri1/CG501", ev.Action.arming, "night"),
        ("Nri1/BB005", ev.Action.log, None),
        ("NZZ001", ev.Action.unknown, None),
    ],
)
def test_sia_dc03_mapping(data, action, extra):
    _check(ev.sia_dcs(f"#1234|{data}".encode()), action, extra)


def test_several_sia_blocks_in_one_message():
    found = ev.sia_dcs(b"#1234|Nri1/PA501/ri2/BA003")
    assert [(e.code, e.area) for e in found] == [("sia:PA", "1"), ("sia:BA", "2")]
