"""CAP 1.2 and NENA EIDO exports of an incident: valid against the standards' own schemas,
scoped like the incident detail, logged as a read of her position, nothing of her person."""

from __future__ import annotations

import re
import uuid

import orjson
import pytest
from lxml import etree

from tests.interop.schemas import cap_errors, eido_errors

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
IN_A = {"lat": 37.5212345, "lon": 126.9254321, "accuracy_m": 35.0}
NAME, NOTE = "Seo Jiyoung", "he followed me from the station"


@pytest.fixture
async def scene(make_district, make_staff, make_member, client):
    a = await make_district("11110", "Jongno-gu", 126.90, 37.50, 126.95, 37.55)
    b = await make_district("11140", "Jung-gu", 126.95, 37.50, 127.00, 37.55)
    member = await make_member(name=NAME)
    r = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": IN_A,
            "note": NOTE,
        },
        headers={"Authorization": f"Bearer {member.token}"},
    )
    assert r.status_code == 201, r.text
    return {
        "incident_id": r.json()["incident_id"],
        "member": member,
        "a": await make_staff("dispatcher", district_ids=(a,)),
        "b": await make_staff("dispatcher", district_ids=(b,)),
        "city": await make_staff("dispatcher", city_wide=True),
    }


def _text(root: etree._Element, path: str) -> str | None:
    el = root.find(path)
    return None if el is None else el.text


def _no_person(body: bytes, member) -> None:
    text = body.decode()
    assert NAME not in text and NOTE not in text
    phone = text.find("+8210")
    assert phone == -1, text[phone - 50 : phone + 50]
    assert str(member.id) not in text


async def test_the_cap_alert_is_valid_against_the_oasis_xsd_and_carries_the_circle(client, scene):
    iid = scene["incident_id"]
    r = await client.get(f"/v1/console/incidents/{iid}/cap", headers=scene["a"].headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/cap+xml")
    assert cap_errors(r.content) == []
    root = etree.fromstring(r.content)
    assert _text(root, f"{CAP}status") == "Test"  # not production: never actionable
    assert _text(root, f"{CAP}msgType") == "Alert"
    assert _text(root, f"{CAP}scope") == "Restricted"
    assert _text(root, f"{CAP}restriction")
    assert _text(root, f"{CAP}info/{CAP}category") == "Security"
    assert _text(root, f"{CAP}info/{CAP}urgency") == "Immediate"
    assert _text(root, f"{CAP}info/{CAP}severity") == "Severe"
    assert _text(root, f"{CAP}info/{CAP}certainty") == "Observed"
    assert _text(root, f"{CAP}info/{CAP}area/{CAP}areaDesc") == "Jongno-gu, Seoul"
    assert _text(root, f"{CAP}info/{CAP}area/{CAP}circle") == "37.521234,126.925432 0.035"
    for stamp in re.findall(rb"<(?:sent|onset)>([^<]+)<", r.content):
        assert stamp.endswith(b"+09:00"), stamp
    _no_person(r.content, scene["member"])


async def test_the_eido_is_valid_against_nenas_schema_with_location_status_and_notes(client, scene):
    iid = scene["incident_id"]
    r = await client.get(f"/v1/console/incidents/{iid}/eido", headers=scene["a"].headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert eido_errors(doc) == []
    incident = doc["incidentComponent"]
    assert incident["incidentStatusCommonRegistryText"] == ["Active"]
    assert incident["incidentTypeCommonRegistryText"] == "ALRPANA"
    [location] = doc["locationComponent"]
    assert location["locationTypeDescriptionRegistryText"] == "CurrentIncident"
    assert "<gml:pos>37.521234 126.925432</gml:pos>" in location["locationByValue"]
    assert 'uom="urn:ogc:def:uom:EPSG::9001">35.0<' in location["locationByValue"]
    assert incident["locationReference"] == [{"$ref": location["$id"]}]
    notes = [n["notesActionComments"] for n in doc["notesComponent"]]
    assert notes[0] == "<p>Alert received</p>"
    assert incident["notesReference"] == [{"$ref": n["$id"]} for n in doc["notesComponent"]]
    assert doc["lastUpdateTimeStamp"].endswith("+09:00")
    _no_person(r.content, scene["member"])


async def test_the_schemas_refuse_a_broken_document(client, scene):
    """The validators are not blind: what the standards require, taken away, fails."""
    iid = scene["incident_id"]
    cap = (await client.get(f"/v1/console/incidents/{iid}/cap", headers=scene["a"].headers)).content
    zulu = re.sub(rb"<sent>[^<]+</sent>", b"<sent>2026-12-07T14:41:07Z</sent>", cap)
    assert cap_errors(zulu) != []
    assert cap_errors(cap.replace(b"<urgency>Immediate", b"<urgency>Now")) != []
    doc = (await client.get(f"/v1/console/incidents/{iid}/eido", headers=scene["a"].headers)).json()
    del doc["incidentComponent"]["incidentTypeCommonRegistryText"]
    assert eido_errors(doc) != []
    doc["agencyComponent"] = "us"
    assert len(eido_errors(doc)) >= 2


async def test_nenas_own_sample_is_valid():
    from tests.interop.schemas import eido_dir

    sample = eido_dir() / "Samples" / "Sample call transfer EIDO.json"
    assert eido_errors(orjson.loads(sample.read_bytes())) == []


async def test_another_districts_dispatcher_gets_404_and_the_export_is_a_logged_read(
    client, scene, pool
):
    iid = scene["incident_id"]
    for fmt in ("cap", "eido"):
        r = await client.get(f"/v1/console/incidents/{iid}/{fmt}", headers=scene["b"].headers)
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "NotFound"
        r = await client.get(
            f"/v1/console/incidents/{uuid.uuid4()}/{fmt}", headers=scene["a"].headers
        )
        assert r.status_code == 404
    before = await pool.fetchval(
        "SELECT count(*) FROM location_access WHERE reason = 'agency_export'"
    )
    assert before == 0  # the refused exports read nothing
    for who in ("a", "city"):
        for fmt in ("cap", "eido"):
            r = await client.get(f"/v1/console/incidents/{iid}/{fmt}", headers=scene[who].headers)
            assert r.status_code == 200
    rows = await pool.fetch(
        "SELECT staff_ids, incident_id FROM location_access WHERE reason = 'agency_export'"
        " ORDER BY id"
    )
    assert [(r["staff_ids"], str(r["incident_id"])) for r in rows] == [
        ([scene["a"].id], iid),
        ([scene["a"].id], iid),
        ([scene["city"].id], iid),
        ([scene["city"].id], iid),
    ]


async def test_her_export_says_her_alert_was_handed_to_another_agency(client, scene):
    iid = scene["incident_id"]
    await client.get(f"/v1/console/incidents/{iid}/cap", headers=scene["a"].headers)
    r = await client.get(
        "/v1/me/export", headers={"Authorization": f"Bearer {scene['member'].token}"}
    )
    assert r.status_code == 200, r.text
    reads = [x for a in r.json()["alerts"] for x in a["location_reads"]]
    assert any(x["reason"] == "agency_export" and "agency" in x["why"] for x in reads), reads


async def test_a_closed_false_alarm_is_a_cap_cancel_and_an_eido_closed(client, scene):
    iid = scene["incident_id"]
    h = scene["a"].headers
    assert (
        await client.post(f"/v1/console/incidents/{iid}/ack", json={}, headers=h)
    ).status_code == 200
    r = await client.post(
        f"/v1/console/incidents/{iid}/status", json={"status": "false_alarm"}, headers=h
    )
    assert r.status_code == 200, r.text
    cap = (await client.get(f"/v1/console/incidents/{iid}/cap", headers=h)).content
    assert cap_errors(cap) == []
    root = etree.fromstring(cap)
    assert _text(root, f"{CAP}msgType") == "Cancel"
    assert _text(root, f"{CAP}info/{CAP}urgency") == "Past"
    assert _text(root, f"{CAP}info/{CAP}certainty") == "Unlikely"
    references = _text(root, f"{CAP}references") or ""
    sender, first_id, sent = references.split(",")
    assert sender == "dispatch@ansim.example.kr" and first_id.startswith(f"ansim-{iid}-")
    assert sent.endswith("+09:00")
    doc = (await client.get(f"/v1/console/incidents/{iid}/eido", headers=h)).json()
    assert eido_errors(doc) == []
    assert doc["incidentComponent"]["incidentStatusCommonRegistryText"] == ["Closed"]
    notes = [n["notesActionComments"] for n in doc["notesComponent"]]
    assert "<p>Acknowledged by a police dispatcher</p>" in notes
    assert notes[-1] == "<p>Closed: false alarm</p>"


async def test_an_incident_without_a_position_is_valid_without_a_circle(
    client, make_member, make_staff, pool
):
    member = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "trigger": "button"},
        headers={"Authorization": f"Bearer {member.token}"},
    )
    assert r.status_code == 201, r.text
    iid = r.json()["incident_id"]
    city = await make_staff("dispatcher", city_wide=True)
    cap = (await client.get(f"/v1/console/incidents/{iid}/cap", headers=city.headers)).content
    assert cap_errors(cap) == []
    assert b"<circle>" not in cap and b"Position unknown" in cap
    doc = (await client.get(f"/v1/console/incidents/{iid}/eido", headers=city.headers)).json()
    assert eido_errors(doc) == [] and "locationComponent" not in doc
    # Nothing of her position was shown: nothing logged.
    assert (
        await pool.fetchval("SELECT count(*) FROM location_access WHERE reason = 'agency_export'")
        == 0
    )
