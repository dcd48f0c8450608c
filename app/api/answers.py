"""What the console, volunteer, operator and member endpoints answer (their ``response_model``),
so ``/openapi.json`` documents every JSON answer (issue 17 §6).

The services build these answers as plain dicts of JSON values (ids and timestamps already
strings: ``Time`` is an ISO 8601 text as ``datetime.isoformat()`` writes it), and a model here
only names and types them: nothing is renamed or reformatted on the way out. A key a service adds
that a model does not name is still sent (``extra="allow"``); the test suite sets
``ANSIM_ANSWERS_EXTRA=forbid`` so such a key fails a test instead of going undocumented.

Hand-built answers (the SOS, a device's signal, the map's reference layer) keep their bytes and
document one of these models in ``responses=``; tests check that the two agree."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from app.api.schemas import DistrictOut, SafePlaceOut

_Extra = Literal["allow", "ignore", "forbid"]
_EXTRA = cast(_Extra, os.environ.get("ANSIM_ANSWERS_EXTRA", "allow"))

#: A timestamp as the services write it (``datetime.isoformat()``, with its UTC offset).
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
#: An id as the services write it.
Id = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Answer(BaseModel):
    model_config = ConfigDict(extra=_EXTRA)


# -- incidents (console, volunteers) ----------------------------------------------------------


class IncidentSummary(Answer):
    """An incident as consoles list it (``app/incidents/console_service.summary_from_row``)."""

    id: Id
    emergency_id: Id = Field(description="One emergency's reports share it (linked reports)")
    source: str = Field(description="app, button, sensor or safe_return")
    trigger: str | None
    status: str
    silent: bool
    duress: bool
    escalation_level: int
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    district_id: Id | None
    district_code: str | None
    district_name: str | None
    safe_place_id: Id | None
    received_at: Time
    acknowledged_at: Time | None
    ack_deadline_at: Time | None
    closed_at: Time | None
    disposition: str | None
    flags: list[str]
    coverage: Literal["unlocated", "outside_city", "covering"] | None = Field(
        description="Why it may be on a console that is not its district's"
    )
    covered_by: list[Id] = Field(description="Districts given it because nobody watched its own")
    unwatched: bool
    stage_deadline_at: Time | None


class IncidentList(Answer):
    incidents: list[IncidentSummary]


class TimelineEntry(Answer):
    id: int
    kind: str
    at: Time
    actor: str | None
    data: dict[str, Any] | None


class TrailPoint(Answer):
    lat: float
    lon: float
    accuracy_m: float | None
    captured_at: Time | None
    received_at: Time


class OfferEntry(Answer):
    id: Id
    volunteer_id: Id
    name: str
    badge_number: str | None
    status: str
    distance_m: float | None
    offered_at: Time
    responded_at: Time | None


class AssignmentEntry(Answer):
    id: Id
    kind: str
    unit: str | None
    volunteer_id: Id | None
    name: str | None
    badge_number: str | None
    created_at: Time


class IncidentDetail(IncidentSummary):
    timeline: list[TimelineEntry]
    trail: list[TrailPoint]
    offers: list[OfferEntry]
    assignments: list[AssignmentEntry]
    linked: list[dict[str, Any]] = Field(
        description="The emergency's other reports: a summary (with its trail) when in the"
        " dispatcher's scope, else only id, linked, source, status and district_name"
    )
    home: dict[str, Any] | None = Field(
        description="A home sensor's incident: her home, the sensor, 24 h of arming history"
    )


class NewAssignment(Answer):
    id: Id
    kind: str
    unit: str | None
    volunteer_id: Id | None


class AssignOut(Answer):
    assignment: NewAssignment
    incident: IncidentSummary


class DeadLetters(Answer):
    entries: list[dict[str, str]] = Field(description="The stream entry's id and fields")


class DistrictCoverage(Answer):
    id: Id
    code: str
    name: str
    consoles: int


class CoverageOut(Answer):
    city_wide_consoles: int
    districts: list[DistrictCoverage]
    unwatched_districts: list[str]
    unwatched_incidents: int


class NearbyVolunteer(Answer):
    id: Id
    name: str
    badge_number: str | None
    assigned: bool
    distance_m: float | None
    lat: float | None
    lon: float | None


class NearbyOut(Answer):
    incident_id: Id
    safe_places: list[SafePlaceOut]
    police: list[SafePlaceOut]
    volunteers: list[NearbyVolunteer]


# -- volunteers -------------------------------------------------------------------------------


class DutyOut(Answer):
    on_duty: bool


class OfferOut(Answer):
    id: Id
    incident_id: Id
    distance_m: float | None
    district_name: str | None
    offered_at: Time


class OffersOut(Answer):
    offers: list[OfferOut]


class AcceptedAssignment(Answer):
    id: Id
    incident_id: Id


class AcceptOut(Answer):
    assignment: AcceptedAssignment
    incident: IncidentSummary = Field(description="Assigned now: with the exact location")


class DeclineOut(Answer):
    status: Literal["declined"]


# -- operators --------------------------------------------------------------------------------


class Reader(Answer):
    id: Id
    username: str | None
    name: str | None
    role: str | None


class LocationAccessEntry(Answer):
    id: int
    at: Time
    incident_id: Id
    reason: str
    staff: list[Reader]
    agency_subscription_id: Id | None = Field(
        None, description="A delivery to another agency: its subscription (docs/interop.md)"
    )


class LocationAccessOut(Answer):
    entries: list[LocationAccessEntry]


class SecurityEvent(Answer):
    id: int
    at: Time
    kind: str
    device_id: Id | None
    member_id: Id | None
    source_ip: str | None
    detail: dict[str, Any] | None


class SecurityEventsOut(Answer):
    events: list[SecurityEvent]


class DeviceStore(Answer):
    id: Id
    name: str
    address: str | None


class DeviceHome(Answer):
    id: Id
    label: str | None
    address: str | None


class DeviceHealth(Answer):
    offline: bool | None
    offline_reported_at: Time | None
    last_heartbeat_at: Time | None
    last_seen_at: Time | None
    battery_pct: int | None
    tampered_at: Time | None
    last_test_at: Time | None


class DeviceOut(Answer):
    id: Id
    label: str | None
    enabled: bool
    created_at: Time
    kind: str
    store: DeviceStore | None
    home: DeviceHome | None = Field(description="A home's sensor: the home it is installed in")
    district: DistrictOut | None
    health: DeviceHealth
    previous_secret_valid_until: Time | None


class DevicesOut(Answer):
    devices: list[DeviceOut]
    offline_after_s: float


class RotatedSecret(Answer):
    device_id: Id
    secret: str = Field(description="Shown once")
    previous_secret_valid_until: Time | None


class Revoked(Answer):
    revoked: int


class AlarmAccountOut(Answer):
    id: Id
    account: str
    prefix: str
    safe_place_id: Id
    device_id: Id
    label: str | None
    encrypted: bool
    supervision_s: float
    window_past_s: float
    window_future_s: float
    enabled: bool
    last_message_at: Time | None
    created_at: Time
    offline_since: Time | None
    troubles: list[str]
    last_heartbeat_at: Time | None


class AlarmAccountsOut(Answer):
    accounts: list[AlarmAccountOut]


class AlarmEvent(Answer):
    id: int
    received_at: Time
    token: str
    seq: str
    code: str
    qualifier: str | None
    zone: str | None
    area: str | None
    action: str
    incident_id: Id | None
    detail: dict[str, Any] | None


class AlarmEventsOut(Answer):
    events: list[AlarmEvent]


# -- her account ------------------------------------------------------------------------------


class GuardianOut(Answer):
    id: Id
    name: str
    phone: str


class ProfileOut(Answer):
    member_id: Id
    name: str
    phone: str
    created_at: Time
    guardians: list[GuardianOut]


class ExportedPosition(Answer):
    lat: float
    lon: float
    accuracy_m: float | None


class ExportedEvent(Answer):
    kind: str
    at: Time


class LocationRead(Answer):
    at: Time
    reason: str
    why: str = Field(description="The reason in plain words")
    by: list[dict[str, Any]] = Field(
        description="Staff by role, badge_number and unit (never by name); a guardian as"
        " role guardian with the name she gave"
    )


class ExportedAlert(Answer):
    incident_id: Id
    received_at: Time
    status: str
    trigger: str | None
    note: str | None
    location: ExportedPosition | None
    timeline: list[ExportedEvent]
    trail: list[TrailPoint]
    location_reads: list[LocationRead]


class HomePosition(Answer):
    lat: float
    lon: float


class ExportedHomeDevice(Answer):
    device_id: Id
    kind: str
    label: str | None
    enabled: bool
    registered_at: Time
    battery_pct: int | None
    last_seen_at: Time | None
    alarm_account: str | None = Field(description="A panel's account number (never its key)")


class ExportedArming(Answer):
    at: Time
    kind: str
    via: str | None
    device_kind: str | None
    incident_id: Id | None
    duress: bool


class ExportedHomeAlarm(Answer):
    incident_id: Id
    received_at: Time
    trigger: str | None
    status: str
    closed_at: Time | None


class ExportedHome(Answer):
    """One of her homes (``app/homes/member_data.export_homes``)."""

    home_id: Id
    label: str | None
    address: str
    location: HomePosition
    district: dict[str, str] | None
    state: str
    state_changed_at: Time
    registered_at: Time
    enabled: bool
    devices: list[ExportedHomeDevice]
    arming_history: list[ExportedArming]
    alarms: list[ExportedHomeAlarm]


class ExportOut(ProfileOut):
    alerts: list[ExportedAlert]
    homes: list[ExportedHome]
    exported_at: Time


class HomeSensor(Answer):
    id: Id
    kind: str
    label: str | None
    battery_pct: int | None
    last_seen_at: Time | None


class MyHome(Answer):
    id: Id
    label: str | None
    address: str | None
    state: str
    changed_at: Time
    entry_delay_running: bool
    devices: list[HomeSensor]


class MyHomesOut(Answer):
    homes: list[MyHome]


class HomeStateOut(Answer):
    home_id: Id
    state: str = Field(description="disarmed, away or night")
    changed_at: Time


# -- devices (hand-built answers: documented in ``responses=``) ------------------------------


class SignalWarning(Answer):
    code: str
    field: str
    detail: str


class DeviceStoreRef(Answer):
    id: Id
    name: str
    address: str | None
    phone: str | None
    lat: float
    lon: float


class PanicOut(Answer):
    """A store button's panic: the incident, the store and the nearest police."""

    incident_id: Id
    status: str
    received_at: Time
    district: DistrictOut | None
    store: DeviceStoreRef
    nearest_police: list[SafePlaceOut]
    server_time: int = Field(description="Unix seconds (the device's clock check)")
    flags: list[str]
    warnings: list[SignalWarning]


class SignalAck(Answer):
    """Any other signal. A cancel or duress adds the incident's id, status and whether it was
    cancelled; a test adds the store."""

    device_id: Id
    type: str
    received_at: Time
    server_time: int
    incident_id: Id | None = None
    status: str | None = None
    cancelled: bool | None = None
    store: DeviceStoreRef | None = None


class HomeRefOut(Answer):
    id: Id
    label: str | None


class HomePanicOut(Answer):
    """The in-home button: the incident at her home."""

    incident_id: Id
    received_at: Time
    home: HomeRefOut
    server_time: int
    flags: list[str]
    warnings: list[SignalWarning]


class HomeSignalAck(Answer):
    """Any other home signal; arming, disarming and a test add the home (its state after an arm
    or disarm)."""

    device_id: Id
    type: str
    received_at: Time
    server_time: int
    home: dict[str, Any] | None = None


# -- pages and health -------------------------------------------------------------------------


class MapConfig(Answer):
    tile_url: str | None
    tile_attribution: str | None
    dongs_url: str | None


class WebConfig(Answer):
    environment: str
    demo: dict[str, Any] | None = Field(description="Demo sign-in details, in development only")
    map: MapConfig


class Alive(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


class MapPlace(Answer):
    id: Id
    name: str
    kind: str
    police: bool
    is_safety_house: bool
    open_24h: bool
    phone: str | None
    address: str | None
    lat: float
    lon: float


class MapReference(Answer):
    districts: dict[str, Any] = Field(description="A GeoJSON FeatureCollection")
    places: list[MapPlace]
    truncated: bool
