"""What an alarm panel's event becomes in Ansim: the mapping table (docs/alarm-panels.md).

Contact ID (``ADM-CID``, ``QEEE GG ZZZ``) and SIA DC-03 (``SIA-DCS``, ``Nri1/PA501``) events are
read into ``PanelEvent``s, each with an ``Action``:

- ``incident``: an incident at the account's place (panic, duress, silent panic, intrusion,
  fire and medical marked for their agency);
- ``trouble`` / ``restore``: a trouble on the account's device, on the district's consoles
  (``app/receiver/health.py``), until its restore (qualifier 3, or the DC-03 restore code);
- ``tamper``: the device's tamper report (``app/devices/health.py``);
- ``test``: a periodic test (supervision: the device's heartbeat);
- ``arming``: an opening (disarmed) or a closing (armed away; armed stay: night) at the panel's
  keypad: at a home, her home's arming state and history follow; at a store, the log only;
- ``log``: kept on the account's log only (bypass, an alarm's restore, a status report);
- ``unknown``: kept on the log, answered ``DUH``.

Every message, whatever its events, is proof of life (the supervision timer restarts).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any


class Action(enum.StrEnum):
    incident = "incident"
    trouble = "trouble"
    restore = "restore"
    tamper = "tamper"
    test = "test"
    arming = "arming"
    log = "log"
    unknown = "unknown"


@dataclass(frozen=True)
class Alarm:
    """An incident to raise: its ``trigger``, silent or not, duress, the agency it is for."""

    trigger: str
    silent: bool = False
    duress: bool = False
    #: ``fire`` or ``medical`` when it is for that agency rather than the police.
    agency: str | None = None
    #: The trigger at a home, when it is not ``trigger`` (a burglary rather than an intrusion).
    home: str | None = None

    def trigger_at(self, *, home: bool) -> str:
        return (self.home or self.trigger) if home else self.trigger


PANIC = Alarm("alarm_panic")
DURESS = Alarm("alarm_duress", silent=True, duress=True)
SILENT_PANIC = Alarm("alarm_silent_panic", silent=True)
#: "130 burglary": an intrusion at the store; at a home, a burglary at her home (``home``).
INTRUSION = Alarm("alarm_intrusion", home="alarm_burglary")
SILENT_INTRUSION = Alarm("alarm_intrusion", silent=True, home="alarm_burglary")
FIRE = Alarm("alarm_fire", agency="fire")
MEDICAL = Alarm("alarm_medical", agency="medical")


@dataclass(frozen=True)
class PanelEvent:
    action: Action
    #: ``cid:120`` or ``sia:PA``: the code as received, for the log and the console.
    code: str
    qualifier: str | None = None
    zone: str | None = None
    area: str | None = None
    alarm: Alarm | None = None
    #: For ``trouble`` / ``restore``: which trouble (``ac_loss``, ``low_battery``, ...).
    trouble: str | None = None
    #: For ``arming``: the state the panel reports (``away``, ``night`` or ``disarmed``).
    arming: str | None = None


# Contact ID event codes (the qualifier decides new / restore).
_CID_ALARMS: dict[str, Alarm] = {
    "100": MEDICAL,
    "101": MEDICAL,
    "102": MEDICAL,
    "110": FIRE,
    "111": FIRE,
    "112": FIRE,
    "113": FIRE,
    "114": FIRE,
    "115": FIRE,
    "116": FIRE,
    "117": FIRE,
    "118": FIRE,
    "120": PANIC,
    "121": DURESS,
    "122": SILENT_PANIC,
    "123": PANIC,
    "124": DURESS,
    "125": DURESS,
    "130": INTRUSION,
    "131": INTRUSION,
    "132": INTRUSION,
    "133": INTRUSION,
    "134": INTRUSION,
    "135": INTRUSION,
    "146": SILENT_INTRUSION,
}
_CID_TROUBLES = {
    "300": "system_trouble",
    "301": "ac_loss",
    "302": "low_battery",
    "309": "battery_test_failure",
    "311": "battery_missing",
    "350": "communication",
    "351": "communication",
    "354": "communication",
}
_CID_TAMPER = frozenset({"137", "144", "145", "383"})
_CID_TESTS = frozenset({"601", "602", "603"})
#: Openings and closings (the CCC field is the user): qualifier 1 opening (disarmed), 3
#: closing (armed away; 441/442 "armed stay": night).
_CID_OPEN_CLOSE = re.compile(r"40[0-9]")
_CID_STAY = frozenset({"441", "442"})
#: Known and only logged: other 400s, bypasses (570s), zone faults.
_CID_LOGGED = re.compile(r"4[0-9][0-9]|57[0-9]|38[0-9]|62[0-9]")

# SIA DC-03 two-letter codes.
_SIA_ALARMS: dict[str, Alarm] = {
    "PA": PANIC,
    "HA": DURESS,
    "QA": MEDICAL,
    "MA": MEDICAL,
    "FA": FIRE,
    "BA": INTRUSION,
}
#: An alarm's restore: on the log only (a dispatcher closes the incident, never the panel).
_SIA_ALARM_RESTORES = frozenset({"PH", "PR", "HH", "HR", "QH", "QR", "MH", "MR", "FH", "FR",
                                 "BH", "BR"})  # fmt: skip
_SIA_TROUBLES = {"AT": "ac_loss", "YT": "low_battery", "YC": "communication",
                 "YS": "communication", "ET": "system_trouble"}  # fmt: skip
_SIA_RESTORES = {"AR": "ac_loss", "YR": "low_battery", "YK": "communication",
                 "ER": "system_trouble"}  # fmt: skip
_SIA_TAMPER = frozenset({"TA", "ES"})
_SIA_TESTS = frozenset({"RP", "RX", "TX"})
#: Openings and closings: OP/OQ/OG/OA/OS opening (disarmed), CL/CQ/CA/CS closing (armed
#: away), CG and NL armed stay or perimeter only (night).
_SIA_ARMING = {"OP": "disarmed", "OQ": "disarmed", "OG": "disarmed", "OA": "disarmed",
               "OS": "disarmed", "CL": "away", "CQ": "away", "CA": "away", "CS": "away",
               "CG": "night", "NL": "night"}  # fmt: skip
_SIA_LOGGED = frozenset({"BB", "BU", "TR", "RR", "EE", "RS", "LB", "LX"})


def strip_account(data: bytes) -> bytes:
    """``#acct|rest`` or ``|rest`` → ``rest`` (the account echo inside the brackets)."""
    if data.startswith(b"#"):
        bar = data.find(b"|")
        return data[bar + 1 :] if bar >= 0 else b""
    return data[1:] if data.startswith(b"|") else data


_CID = re.compile(r"([136])([0-9A-F]{3}) ?([0-9A-F]{2}) ?([0-9A-F]{3})")


def contact_id(data: bytes) -> list[PanelEvent]:
    """``QEEE GG ZZZ`` (the DC-09 form of Contact ID: no message type, no checksum)."""
    text = strip_account(data).decode("ascii", "replace").strip().upper()
    m = _CID.fullmatch(text)
    if m is None:
        return [PanelEvent(Action.unknown, f"cid:{text[:16]}")]
    q, eee, gg, zzz = m.groups()
    code = f"cid:{eee}"
    kw: dict[str, Any] = {"qualifier": q, "zone": zzz, "area": gg}
    if eee in _CID_TESTS:
        return [PanelEvent(Action.test, code, **kw)]
    if eee in _CID_TROUBLES:
        action = Action.restore if q == "3" else Action.trouble
        return [PanelEvent(action, code, trouble=_CID_TROUBLES[eee], **kw)]
    if eee in _CID_ALARMS:
        # A restore (3) or a status report (6, still present) raises nothing new.
        if q == "1":
            return [PanelEvent(Action.incident, code, alarm=_CID_ALARMS[eee], **kw)]
        return [PanelEvent(Action.log, code, **kw)]
    if eee in _CID_TAMPER:
        return [PanelEvent(Action.tamper if q == "1" else Action.log, code, **kw)]
    if (_CID_OPEN_CLOSE.fullmatch(eee) or eee in _CID_STAY) and q in ("1", "3"):
        closed = "night" if eee in _CID_STAY else "away"
        return [PanelEvent(Action.arming, code, arming="disarmed" if q == "1" else closed, **kw)]
    if _CID_LOGGED.fullmatch(eee):
        return [PanelEvent(Action.log, code, **kw)]
    return [PanelEvent(Action.unknown, code, **kw)]


_SIA_BLOCK = re.compile(r"([A-Z]{2})([0-9A-Za-z]*)")


def sia_dcs(data: bytes) -> list[PanelEvent]:
    """``Nri1/PA501`` and the like: ``N`` (new event), then ``/``-separated fields, each an
    ``ri``/``ti``/``id``/``pi`` modifier or a two-letter code and its zone. ``^text^`` and
    ``|A…`` text blocks are ignored."""
    text = strip_account(data).decode("ascii", "replace")
    text = re.sub(r"\^[^^]*\^", "", text).split("|", 1)[0].strip()
    if text[:1] in ("N", "O"):
        text = text[1:]
    events: list[PanelEvent] = []
    area: str | None = None
    for part in filter(None, text.split("/")):
        modifier = part[:2]
        if modifier == "ri":
            area = part[2:]
            continue
        if modifier in ("ti", "id", "pi", "lp"):
            continue
        if modifier.startswith("ri") or len(part) < 2:
            continue
        # "ri1PA501" (no slash) is common too: an area modifier glued to the code.
        glued = re.fullmatch(r"ri(\d+)(.*)", part)
        if glued:
            area, part = glued.groups()
        m = _SIA_BLOCK.match(part)
        if m is None:
            events.append(PanelEvent(Action.unknown, f"sia:{part[:8]}", area=area))
            continue
        events.append(_sia_code(m[1], m[2] or None, area))
    return events or [PanelEvent(Action.unknown, f"sia:{text[:8]}")]


def _sia_code(cc: str, zone: str | None, area: str | None) -> PanelEvent:
    code = f"sia:{cc}"
    kw: dict[str, Any] = {"zone": zone, "area": area}
    if cc in _SIA_ALARMS:
        return PanelEvent(Action.incident, code, alarm=_SIA_ALARMS[cc], **kw)
    if cc in _SIA_TROUBLES:
        return PanelEvent(Action.trouble, code, trouble=_SIA_TROUBLES[cc], **kw)
    if cc in _SIA_RESTORES:
        return PanelEvent(Action.restore, code, trouble=_SIA_RESTORES[cc], **kw)
    if cc in _SIA_TAMPER:
        return PanelEvent(Action.tamper, code, **kw)
    if cc in _SIA_TESTS:
        return PanelEvent(Action.test, code, **kw)
    if cc in _SIA_ARMING:
        return PanelEvent(Action.arming, code, arming=_SIA_ARMING[cc], **kw)
    if cc in _SIA_ALARM_RESTORES or cc in _SIA_LOGGED:
        return PanelEvent(Action.log, code, **kw)
    return PanelEvent(Action.unknown, code, **kw)


def events_of(kind: str, data: bytes) -> list[PanelEvent]:
    """The events of a frame's content; a ``NULL`` has none (a link test)."""
    if kind == "NULL" or not strip_account(data).strip():
        return []  # a link test (an empty SIA-DCS too)
    if kind == "ADM-CID":
        return contact_id(data)
    return sia_dcs(data)


# --- Contact ID over the phone line (16 DTMF digits): the checksum ------------------------

# Ademco's digits B-F are 11-15; on DTMF, B and C travel as * and #.
_CID_WEIGHT = {**{str(d): d for d in range(1, 10)}, "0": 10, "B": 11, "C": 12, "D": 13,
               "E": 14, "F": 15, "*": 11, "#": 12}  # fmt: skip


def contact_id_checksum_ok(message: str) -> bool:
    """A 16-digit Contact ID message (``ACCT MT Q XYZ GG CCC S``): the digits, ``0`` counted as
    10 and B–F as 11–15, sum to a multiple of 15."""
    if len(message) != 16 or any(c not in _CID_WEIGHT for c in message.upper()):
        return False
    return sum(_CID_WEIGHT[c] for c in message.upper()) % 15 == 0


def contact_id_from_dtmf(message: str) -> str | None:
    """The DC-09 data (``QEEE GG ZZZ``) of a 16-digit message with a good checksum."""
    if not contact_id_checksum_ok(message):
        return None
    m = message.upper()
    return f"{m[6]}{m[7:10]} {m[10:12]} {m[12:15]}"
