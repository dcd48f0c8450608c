"""An incident as a NENA EIDO (NENA-STA-021.1, JSON; valid against NENA's ``openapi.yaml``
with its NIEM components, which the tests check every document against).

One agency component (us, the call-receiving agency), the incident component (APCO type,
the status in NENA's registry and ours), the current position as a PIDF-LO circle (RFC 5491)
and the timeline as notes. Identifiers are ``urn:emergency:uid:...`` under
``ANSIM_INTEROP_AGENCY_ID``."""

from __future__ import annotations

import html
from typing import Any
from xml.sax.saxutils import quoteattr

from app.config import Settings
from app.interop.cap import apco_type, incident_urn
from app.interop.snapshot import Snapshot, area_description, event_title, note_text, stamp

MEDIA_TYPE = "application/json"
CONTEXT = {"@vocab": "./JSON-LD_Contexts/EmergencyIncidentDataObjectType.jsonld"}

#: Our status in NENA's Incident Status registry.
STATUS = {
    "new": ["Active"],
    "acknowledged": ["Active"],
    "responding": ["Active", "ResourcesEnroute"],
    "on_scene": ["Active", "ResourcesOnscene"],
    "resolved": ["Closed"],
    "false_alarm": ["Closed"],
    "cancelled": ["Cancelled"],
}


def _uid(settings: Settings, kind: str, local: str) -> str:
    return f"urn:emergency:uid:{kind}:{local}:{settings.interop_agency_id}"


def pidf_lo(settings: Settings, s: Snapshot) -> str:
    """Her position as a PIDF-LO document: a circle of the accuracy's radius (metres) around it,
    not to be passed on (``retransmission-allowed`` false)."""
    radius = max(s.accuracy_m or 0.0, 10.0)
    entity = quoteattr(f"pres:incident-{s.id.hex}@{settings.interop_agency_id}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf"'
        ' xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"'
        ' xmlns:gbp="urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy"'
        ' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        ' xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0"'
        f" entity={entity}>"
        '<dm:device id="incident"><gp:geopriv><gp:location-info>'
        '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326">'
        f"<gml:pos>{s.lat:.6f} {s.lon:.6f}</gml:pos>"
        f'<gs:radius uom="urn:ogc:def:uom:EPSG::9001">{radius:.1f}</gs:radius>'
        "</gs:Circle></gp:location-info>"
        "<gp:usage-rules><gbp:retransmission-allowed>false</gbp:retransmission-allowed>"
        "</gp:usage-rules><gp:method>GPS</gp:method></gp:geopriv>"
        f"<dm:timestamp>{stamp(s.updated_at)}</dm:timestamp></dm:device></presence>"
    )


def render(settings: Settings, s: Snapshot) -> dict[str, Any]:
    agency = settings.interop_agency_id
    by = {"$ref": agency}
    updated = stamp(s.updated_at)

    def prologue(component_id: str, at: str = updated) -> dict[str, Any]:
        return {"$id": component_id, "lastUpdateTimeStamp": at, "updatedByAgencyReference": by}

    notes = [
        {
            **prologue(_uid(settings, "noteid", f"{s.id.hex}-{e.id}"), stamp(e.at)),
            "notesActionComments": f"<p>{html.escape(note_text(e))}</p>",
        }
        for e in s.events
    ]
    locations = []
    if s.lat is not None and s.lon is not None:
        locations.append(
            {
                **prologue(_uid(settings, "locationid", f"{s.id.hex}-current")),
                "locationTypeDescriptionRegistryText": "CurrentIncident",
                "locationByValue": pidf_lo(settings, s),
                "locationDescriptionText": area_description(s),
            }
        )
    incident: dict[str, Any] = {
        **prologue(_uid(settings, "incidentcomponentid", s.id.hex)),
        "incidentTypeCommonRegistryText": apco_type(s),
        "incidentTypeInternalCode": f"{s.source}:{s.trigger}",
        "incidentTypeInternalText": event_title(s),
        "incidentStatusCommonRegistryText": STATUS.get(s.status, ["Active"]),
        "incidentStatusInternalText": [s.status],
        "internalIncidentId": str(s.id),
        "incidentCommonPriorityNumber": 1 if s.duress else 2,
        "locationReference": [{"$ref": loc["$id"]} for loc in locations],
        "notesReference": [{"$ref": n["$id"]} for n in notes],
    }
    if s.district_name:
        incident["beatOrDispatchGroupText"] = f"{s.district_code} {s.district_name}"
    document: dict[str, Any] = {
        **prologue(incident_urn(settings, s)),
        "eidoVersion": "1.0",
        "issuingElementIdentification": f"dispatch.{agency}",
        "incidentComponent": incident,
        "agencyComponent": [
            {
                **prologue(agency),
                "agencyRoleDescriptionRegistryText": ["CallReceiving"],
                "agencyType": ["police"],
            }
        ],
        "notesComponent": notes,
        "@context": CONTEXT,
    }
    if locations:
        document["locationComponent"] = locations
    return document
