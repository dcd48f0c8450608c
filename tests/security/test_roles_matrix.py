"""Roles and scopes, deny by default: every route of the app (HTTP and WebSocket) × every kind of
caller, checked against the explicit table below. A route the table does not classify fails the
suite, so a new endpoint cannot ship without someone deciding who may call it.

Callers: anonymous, the member who raised the alert, another member, a dispatcher of district A
(where the alert is), a dispatcher of district B, a city-wide dispatcher, a volunteer offered the
incident but not assigned, the volunteer assigned to it, an operator, and a panic button (HMAC
signature instead of a bearer token)."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.routing import WebSocketRoute

from app.devices.signing import sign_request
from app.homes.service import create_home
from app.interop.subscriptions import create as create_subscription
from app.main import create_app
from app.receiver.accounts import create_account as create_alarm_account
from app.security.passwords import hash_secret
from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token
from tests.security.live_server import serve, ws_session

ROLES = (
    # The order calls are made in, for every route: refusals first, then the callers who may act
    # (some actions change state: e.g. the first acknowledgement wins, a second one is a 409).
    "anonymous",
    "device",
    "other_member",
    "member",
    "dispatcher_b",
    "dispatcher_a",
    "city_wide",
    "volunteer_offered",
    "volunteer_assigned",
    "operator",
)
MEMBERS = ("member", "other_member")
DISPATCHERS = ("dispatcher_a", "dispatcher_b", "city_wide")
VOLUNTEERS = ("volunteer_offered", "volunteer_assigned")
STAFF = (*DISPATCHERS, *VOLUNTEERS, "operator")
IN_A = (37.5217, 126.9283)

# Hashing once keeps each world cheap (argon2 is deliberately slow).
PIN, DURESS, PASSWORD = "1234", "9999", "pw-matrix"
_HASHES: dict[str, str] = {}


def _hash(value: str) -> str:
    if value not in _HASHES:
        _HASHES[value] = hash_secret(value)
    return _HASHES[value]


def audience(kind: str, **cells: int | set[int]) -> dict[str, set[int]]:
    """The row of one route: who the route is for, and what each caller gets.

    Callers outside the audience are refused: no or the wrong kind of credential → 401 (a member
    token is no staff token and vice versa; a device has no bearer token), a staff member
    without the role → 403. ``cells`` gives the answers of the callers inside the audience (and
    overrides), so every cell of the table is decided here, explicitly."""
    row: dict[str, set[int]] = {}
    for role in ROLES:
        if kind == "public":
            row[role] = {200}
        elif kind == "device" or role in ("anonymous", "device"):
            row[role] = {401}
        elif kind == "member":
            row[role] = {401} if role in STAFF else set()
        elif kind == "any":
            row[role] = set()
        elif role in MEMBERS:
            row[role] = {401}
        elif kind == "staff":
            row[role] = set()
        else:
            allowed = {
                "dispatcher": DISPATCHERS,
                "volunteer": VOLUNTEERS,
                "operator": ("operator",),
            }
            row[role] = set() if role in allowed[kind] else {403}
    for role, expected in cells.items():
        row[role] = expected if isinstance(expected, set) else {expected}
    missing = [role for role, expected in row.items() if not expected]
    assert not missing, f"unclassified callers {missing}"
    return row


def every(roles: tuple[str, ...], status: int) -> dict[str, int]:
    return dict.fromkeys(roles, status)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    expected: dict[str, set[int]]
    body: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)


_NO_WALK = "00000000-0000-4000-8000-000000000000"

# Path parameters: {incident_id} is the member's alert in district A; {offer_id} the offered
# volunteer's offer on it; {guardian_id} the member's guardian; {device_id} a button at a store in
# district A; {staff_id} the district-A dispatcher; {member_id} the member.
CALLS = [
    Call("GET", "/openapi.json", audience("public")),
    Call("GET", "/docs", audience("public")),
    Call("GET", "/console", audience("public")),
    Call("GET", "/demo/phone", audience("public")),
    Call("GET", "/app", audience("public")),
    Call("GET", "/app/manifest.webmanifest", audience("public")),
    Call("GET", "/app/sw.js", audience("public")),
    Call("GET", "/demo", audience("public", **every(ROLES, 307))),  # to /demo/phone
    Call("GET", "/v1/web/config", audience("public")),
    # A guardian's link is its own credential (tests/notifications/test_guardians.py): a token
    # nobody was texted is a 404 whoever asks.
    Call("GET", "/guardian/{token}", audience("public"), path_params={"token": "ag_nobody"}),
    Call(
        "GET",
        "/v1/guardian/{token}",
        audience("public", **every(ROLES, 404)),
        path_params={"token": "ag_nobody"},
    ),
    Call("GET", "/static/web/{path:path}", audience("public"), path_params={"path": "common.js"}),
    Call(
        "GET",
        "/static/vendor/{package}/{path:path}",
        audience("public"),
        path_params={"package": "swagger-ui", "path": "swagger-ui-bundle.js"},
    ),
    Call("GET", "/healthz", audience("public")),
    Call("GET", "/readyz", audience("public")),
    Call("GET", "/metrics", audience("public")),  # unless ANSIM_METRICS_TOKEN is set
    Call(
        "POST",
        "/v1/auth/login",
        audience("public"),
        body={"username": "{operator_username}", "password": PASSWORD},
    ),
    Call("POST", "/v1/auth/logout", audience("staff", **every(STAFF, 204))),
    # Her app's sign-in (tests/security/test_member_signin.py): one answer for any caller and
    # any number; the ten callers of one world share one number's limits, hence the 429s.
    Call(
        "POST",
        "/v1/auth/member/code",
        audience("public", **{r: {202, 429} for r in ROLES}),
        body={"phone": "+821055550000"},
    ),
    Call(
        "POST",
        "/v1/auth/member/token",
        audience("public", **{r: {401, 429} for r in ROLES}),
        body={"phone": "+821055550000", "code": "000000"},
    ),
    Call(
        "POST",
        "/v1/alerts",
        # Hers folds into her open alert (200); another member's is a new alert (201).
        audience("member", member=200, other_member=201),
        body={"client_alert_id": "{new_uuid}", "location": {"lat": IN_A[0], "lon": IN_A[1]}},
    ),
    Call(
        "POST",
        "/v1/alerts/{incident_id}/locations",
        audience("member", member=202, other_member=404),
        body={"points": [{"lat": IN_A[0], "lon": IN_A[1], "accuracy_m": 5}]},
    ),
    Call("GET", "/v1/alerts/{incident_id}", audience("member", member=200, other_member=404)),
    Call(
        "POST",
        "/v1/alerts/{incident_id}/cancel",
        audience("member", member=200, other_member=404),
        body={"pin": PIN},
    ),
    Call("GET", "/v1/me", audience("member", **every(MEMBERS, 200))),
    Call(
        "POST",
        "/v1/me/guardians",
        audience("member", **every(MEMBERS, 201)),
        body={"name": "Mom", "phone": "+821011112222"},
    ),
    Call(
        "DELETE",
        "/v1/me/guardians/{guardian_id}",
        audience("member", member=204, other_member=404),
    ),
    Call("GET", "/v1/me/export", audience("member", **every(MEMBERS, 200))),
    Call(
        "POST",
        "/v1/me/pin",
        audience("member", **every(MEMBERS, 200)),
        body={"current_pin": PIN, "new_pin": "2468", "new_duress_pin": "1357"},
    ),
    Call(
        "POST",
        "/v1/me/erase",
        # Her alert is open, so her own erasure waits (409); the other member has none.
        audience("member", member=409, other_member=204),
        body={"pin": PIN},
    ),
    # Her home (tests/homes/): the other member's answer is the one for a home that is not there.
    Call("GET", "/v1/me/homes", audience("member", **every(MEMBERS, 200))),
    Call(
        "POST",
        "/v1/me/homes/{home_id}/arm",
        audience("member", member=200, other_member=404),
        body={"mode": "away"},
    ),
    Call(
        "POST",
        "/v1/me/homes/{home_id}/disarm",
        audience("member", member=200, other_member=404),
        body={"pin": PIN},
    ),
    # A home sensor's endpoint refuses a store's button (its own sensors: tests/homes/).
    Call(
        "POST",
        "/v1/homes/devices/{device_id}/signals",
        audience("device", device=401),
        body={"type": "heartbeat"},
    ),
    Call(
        "POST",
        "/v1/devices/{device_id}/signals",
        audience("device", device=200),
        body={"type": "heartbeat"},
    ),
    Call(
        "GET",
        "/v1/safe-places/nearest",
        audience("any", **every((*MEMBERS, *STAFF), 200)),
        params={"lat": IN_A[0], "lon": IN_A[1]},
    ),
    Call(
        "GET",
        "/v1/map/reference",
        audience("any", **every((*MEMBERS, *STAFF), 200)),
    ),
    # Open data (Seoul's dong boundaries), the same for everyone: no token needed.
    Call("GET", "/v1/map/dongs", audience("public")),
    # Special control zones (tests/zones/): every staff map draws them; the zone of an incident
    # is the dispatchers' (of its district) to read.
    Call("GET", "/v1/map/zones", audience("staff", **every(STAFF, 200))),
    Call(
        "GET",
        "/v1/console/zones/incidents",
        audience("dispatcher", **every(DISPATCHERS, 200)),
        params={"ids": "00000000-0000-4000-8000-000000000001"},
    ),
    # The analytics page and its aggregates (tests/analytics/): dispatchers (scoped to their
    # districts) and operators (the city safety office); no volunteer, no member.
    Call("GET", "/analytics", audience("public")),
    *(
        Call(
            "GET",
            f"/v1/analytics/{name}",
            audience("dispatcher", **every(DISPATCHERS, 200), operator=200),
        )
        for name in ("districts", "dongs", "hours", "outcomes", "heatmap", "crimes")
    ),
    Call(
        "GET",
        "/v1/analytics/export.csv",
        audience("dispatcher", **every(DISPATCHERS, 200), operator=200),
        params={"aggregate": "districts"},
    ),
    Call(
        "GET",
        "/v1/console/incidents/{incident_id}/nearby",
        audience("dispatcher", dispatcher_a=200, city_wide=200, dispatcher_b=404),
    ),
    Call(
        "GET",
        "/v1/console/incidents/{incident_id}/assets",
        audience("dispatcher", dispatcher_a=200, city_wide=200, dispatcher_b=404),
    ),
    Call("GET", "/v1/console/incidents", audience("dispatcher", **every(DISPATCHERS, 200))),
    # Handing an incident to another agency (app/interop): scoped like the detail.
    Call(
        "GET",
        "/v1/console/incidents/{incident_id}/cap",
        audience("dispatcher", dispatcher_a=200, city_wide=200, dispatcher_b=404),
    ),
    Call(
        "GET",
        "/v1/console/incidents/{incident_id}/eido",
        audience("dispatcher", dispatcher_a=200, city_wide=200, dispatcher_b=404),
    ),
    Call(
        "GET",
        "/v1/console/incidents/{incident_id}",
        audience("dispatcher", dispatcher_a=200, city_wide=200, dispatcher_b=404),
    ),
    Call(
        "POST",
        "/v1/console/incidents/{incident_id}/ack",
        audience("dispatcher", dispatcher_b=404, dispatcher_a=200, city_wide=409),
        body={},
    ),
    Call(
        "POST",
        "/v1/console/incidents/{incident_id}/status",
        audience("dispatcher", dispatcher_b=404, dispatcher_a=200, city_wide=409),
        body={"status": "false_alarm", "disposition": "test"},
    ),
    Call(
        "POST",
        "/v1/console/incidents/{incident_id}/assign",
        audience("dispatcher", dispatcher_b=404, dispatcher_a=200, city_wide=200),
        body={"kind": "unit", "unit": "A-12"},
    ),
    Call(
        "GET",
        "/v1/console/dead-letters",
        audience(
            "staff",
            city_wide=200,
            operator=200,
            **every(("dispatcher_a", "dispatcher_b", *VOLUNTEERS), 403),
        ),
    ),
    Call(
        "GET",
        "/v1/console/coverage",
        audience(
            "staff",
            city_wide=200,
            operator=200,
            **every(("dispatcher_a", "dispatcher_b", *VOLUNTEERS), 403),
        ),
    ),
    Call(
        "POST",
        "/v1/volunteers/duty",
        audience("volunteer", **every(VOLUNTEERS, 200)),
        body={"on_duty": True, "lat": IN_A[0], "lon": IN_A[1]},
    ),
    Call(
        "POST",
        "/v1/volunteers/location",
        audience("volunteer", **every(VOLUNTEERS, 204)),
        body={"lat": IN_A[0], "lon": IN_A[1]},
    ),
    Call("GET", "/v1/volunteers/offers", audience("volunteer", **every(VOLUNTEERS, 200))),
    Call(
        "POST",
        "/v1/volunteers/offers/{offer_id}/accept",
        audience("volunteer", volunteer_offered=200, volunteer_assigned=404),
        body={},
    ),
    Call(
        "POST",
        "/v1/volunteers/offers/{offer_id}/decline",
        audience("volunteer", volunteer_offered=200, volunteer_assigned=404),
        body={},
    ),
    Call(
        "GET",
        "/v1/volunteers/incidents/{incident_id}",
        audience("volunteer", volunteer_offered=404, volunteer_assigned=200),
    ),
    Call("GET", "/v1/admin/location-access", audience("operator", operator=200)),
    Call(
        "POST",
        "/v1/admin/zones",
        audience("operator", operator=201),
        body={
            "name": "matrix zone",
            "reason": "test",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[126.9, 37.5], [126.95, 37.5], [126.95, 37.55], [126.9, 37.5]]],
            },
        },
    ),
    Call(
        "POST",
        "/v1/admin/zones/import",
        # A FeatureCollection without features: the operator's answer is the 400 saying so.
        audience("operator", operator=400),
        body={"type": "FeatureCollection", "features": []},
    ),
    Call("GET", "/v1/admin/zones", audience("operator", operator=200)),
    Call(
        "DELETE",
        "/v1/admin/zones/{zone_id}",
        audience("operator", operator=404),
        path_params={"zone_id": _NO_WALK},
    ),
    Call("GET", "/v1/admin/security-events", audience("operator", operator=200)),
    Call("GET", "/v1/admin/devices", audience("operator", operator=200)),
    Call(
        "POST",
        "/v1/admin/alarm-accounts",
        audience("operator", operator=201),
        body={"place_id": "{place_id}", "account": "ABC123", "supervision_s": 600},
    ),
    Call("GET", "/v1/admin/alarm-accounts", audience("operator", operator=200)),
    # Homes (tests/homes/test_admin_homes.py): operators register and correct them.
    Call(
        "POST",
        "/v1/admin/homes",
        audience("operator", operator=201),
        body={"member_id": "{member_id}", "address": "A-dong 2", "lat": IN_A[0], "lon": IN_A[1]},
    ),
    Call("GET", "/v1/admin/homes", audience("operator", operator=200)),
    Call("GET", "/v1/admin/homes/{home_id}", audience("operator", operator=200)),
    Call(
        "PATCH",
        "/v1/admin/homes/{home_id}",
        audience("operator", operator=200),
        body={"label": "flat 1"},
    ),
    Call(
        "POST",
        "/v1/admin/homes/{home_id}/devices",
        audience("operator", operator=201),
        body={"kind": "motion"},
    ),
    Call(
        "POST",
        "/v1/admin/agency-subscriptions",
        audience("operator", operator=201),
        body={"name": "CAD", "url": "http://127.0.0.1:9/cad", "format": "cap"},
    ),
    Call("GET", "/v1/admin/agency-subscriptions", audience("operator", operator=200)),
    Call(
        "POST",
        "/v1/admin/agency-subscriptions/{agency_subscription_id}/disable",
        audience("operator", operator=200),
    ),
    Call(
        "POST",
        "/v1/admin/agency-subscriptions/{agency_subscription_id}/enable",
        audience("operator", operator=200),
    ),
    Call(
        "GET",
        "/v1/admin/agency-subscriptions/{agency_subscription_id}/deliveries",
        audience("operator", operator=200),
    ),
    Call(
        "GET",
        "/v1/admin/alarm-accounts/{alarm_account_id}/log",
        audience("operator", operator=200),
    ),
    Call("GET", "/v1/admin/devices/{device_id}", audience("operator", operator=200)),
    Call("POST", "/v1/admin/devices/{device_id}/disable", audience("operator", operator=200)),
    Call("POST", "/v1/admin/devices/{device_id}/enable", audience("operator", operator=200)),
    Call(
        "POST",
        "/v1/admin/devices/{device_id}/rotate-secret",
        audience("operator", operator=200),
        body={"grace_seconds": 60},
    ),
    Call(
        "POST",
        "/v1/admin/staff/{staff_id}/revoke-tokens",
        audience("operator", operator=200),
    ),
    Call(
        "POST",
        "/v1/admin/members/{member_id}/revoke-tokens",
        audience("operator", operator=200),
    ),
    # Walk me home (tests/safe_return/): a member's own walks; nobody's walk is a 404 for
    # either member (another member's walk is a 404 too, tested there).
    Call(
        "POST",
        "/v1/safe-return",
        audience("member", member=201, other_member=201),
        body={
            "destination": {"lat": IN_A[0], "lon": IN_A[1]},
            "origin": {"lat": IN_A[0] - 0.005, "lon": IN_A[1]},
        },
    ),
    *(
        Call(
            method,
            f"/v1/safe-return/{{session_id}}{tail}",
            audience("member", member=404, other_member=404),
            body=body,
            path_params={"session_id": _NO_WALK},
        )
        for method, tail, body in (
            ("GET", "", None),
            ("POST", "/locations", {"points": [{"lat": IN_A[0], "lon": IN_A[1]}]}),
            ("POST", "/ok", {"pin": PIN}),
            ("POST", "/end", {"pin": PIN}),
            ("POST", "/extend", {"minutes": 5}),
        )
    ),
    Call(
        "GET",
        "/v1/guardian/walk/{token}",
        audience("public", **every(ROLES, 404)),
        path_params={"token": "aw_nobody"},
    ),
    Call(
        "GET",
        "/v1/console/safe-return",
        audience("dispatcher", **every(DISPATCHERS, 200)),
    ),
    # Her saved places (tests/safe_return/test_sessions.py): her own only.
    Call(
        "POST",
        "/v1/me/places",
        audience("member", member=201, other_member=201),
        body={"label": "home", "lat": IN_A[0], "lon": IN_A[1]},
    ),
    Call("GET", "/v1/me/places", audience("member", member=200, other_member=200)),
    Call(
        "DELETE",
        "/v1/me/places/{place_id}",
        audience("member", member=404, other_member=404),
        path_params={"place_id": _NO_WALK},
    ),
    # Safe Return Scouts (tests/safe_return/test_scouts.py): no district of this world offers
    # scouts, so a booking is refused after the role check; nobody's booking is a 404.
    Call(
        "POST",
        "/v1/scout-bookings",
        audience("member", member=422, other_member=422),
        body={
            "meeting_point": {"lat": IN_A[0], "lon": IN_A[1]},
            "meet_at": "2030-01-07T22:30:00+09:00",
            "destination": {"lat": IN_A[0] + 0.003, "lon": IN_A[1]},
        },
    ),
    *(
        Call(
            method,
            f"/v1/scout-bookings/{{booking_id}}{tail}",
            audience("member", member=404, other_member=404),
            body=body,
            path_params={"booking_id": _NO_WALK},
        )
        for method, tail, body in (
            ("GET", "", None),
            ("POST", "/cancel", {}),
            ("POST", "/start", {}),
        )
    ),
    Call("GET", "/v1/scouts/bookings", audience("volunteer", **every(VOLUNTEERS, 200))),
    *(
        Call(
            method,
            f"/v1/scouts/bookings/{{booking_id}}{tail}",
            audience("volunteer", **every(VOLUNTEERS, 404)),
            body=body,
            path_params={"booking_id": _NO_WALK},
        )
        for method, tail, body in (
            ("GET", "", None),
            ("POST", "/arrived", None),
            ("POST", "/start", None),
            ("POST", "/complete", None),
            ("POST", "/cancel", {}),
        )
    ),
    Call(
        "POST",
        "/v1/console/scout-bookings",
        audience("dispatcher", **every(DISPATCHERS, 422)),
        body={
            "guest_name": "Park",
            "guest_phone": "+82105550000",
            "meeting_point": {"lat": IN_A[0], "lon": IN_A[1]},
            "meet_at": "2030-01-07T22:30:00+09:00",
            "destination": {"lat": IN_A[0] + 0.003, "lon": IN_A[1]},
        },
    ),
    Call("GET", "/v1/console/scout-bookings", audience("dispatcher", **every(DISPATCHERS, 200))),
    Call(
        "POST",
        "/v1/console/scout-bookings/{booking_id}/cancel",
        audience("dispatcher", **every(DISPATCHERS, 404)),
        body={},
        path_params={"booking_id": _NO_WALK},
    ),
    Call(
        "PUT",
        "/v1/admin/scouts/districts/{district_code}",
        audience("operator", operator=404),
        body={},
        path_params={"district_code": "nowhere"},
    ),
    Call(
        "POST",
        "/v1/admin/scouts/closed-days",
        audience("operator", operator=201),
        body={"day": "2030-01-01"},
    ),
    Call(
        "POST",
        "/v1/admin/scouts/teams",
        audience("operator", operator=404),
        body={
            "district_code": "nowhere",
            "name": "x",
            "scouts": ["a", "b"],
            "base": {"lat": IN_A[0], "lon": IN_A[1]},
        },
    ),
    Call("GET", "/v1/admin/scouts/teams", audience("operator", operator=200)),
]
HTTP_TABLE = {(c.method, c.path): c for c in CALLS}

# The console stream: close codes (4401 no valid token, 4403 not a dispatcher); dispatchers get
# hello + snapshot, scoped to their districts (checked in the test).
WS_TABLE: dict[str, dict[str, int | str]] = {
    "/v1/console/stream": {
        "anonymous": 4401,
        "device": 4401,
        "member": 4401,
        "other_member": 4401,
        "dispatcher_a": "sees",
        "dispatcher_b": "blind",
        "city_wide": "sees",
        "volunteer_offered": 4403,
        "volunteer_assigned": 4403,
        "operator": 4403,
    }
}


def app_routes(app: FastAPI) -> tuple[set[tuple[str, str]], set[str]]:
    """(method, path) of every HTTP route and the path of every WebSocket route, including
    those of included routers (FastAPI ≥ 0.16x nests them)."""
    http: set[tuple[str, str]] = set()
    ws: set[str] = set()

    def visit(route: Any) -> None:
        if hasattr(route, "effective_route_contexts"):
            for ctx in route.effective_route_contexts():
                visit(ctx.starlette_route or ctx)
            return
        path = route.path
        methods = getattr(route, "methods", None)
        if isinstance(route, WebSocketRoute):
            ws.add(path)
        elif methods:
            http.update((m, path) for m in methods if m != "HEAD")
        else:  # a mount or anything else: it must be classified too
            http.add(("ANY", path))

    for route in app.routes:
        visit(route)
    return http, ws


def test_every_route_is_in_the_table_and_nothing_else():
    http, ws = app_routes(create_app())
    assert http - set(HTTP_TABLE) == set(), "routes nobody classified (deny by default)"
    assert set(HTTP_TABLE) - http == set(), "stale rows: routes that no longer exist"
    assert ws == set(WS_TABLE)
    for call in CALLS:
        assert set(call.expected) == set(ROLES), call.path


# -- the world each route is called in ---------------------------------------------------------


@dataclass
class World:
    ids: dict[str, str]
    tokens: dict[str, str]
    device_secret: str

    def fill(self, text: str, extra: dict[str, str] | None = None) -> str:
        plain = re.sub(r"\{(\w+):\w+\}", r"{\1}", text)  # {path:path} -> {path}
        return plain.format(new_uuid=uuid.uuid4(), **{**self.ids, **(extra or {})})

    def body(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.body(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            return self.fill(value)
        return value


async def build_world(pool: asyncpg.Pool, make_district: Any, make_place: Any) -> World:
    a = await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    b = await make_district("B", "District B", 126.95, 37.50, 127.00, 37.55)
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    for role in MEMBERS:
        member_id = uuid.uuid4()
        tokens[role] = new_token(MEMBER_PREFIX)
        ids[f"{role}_id"] = str(member_id)
        await pool.execute(
            "INSERT INTO member (id, phone, name, pin_hash, duress_pin_hash, wrong_pin_count)"
            " VALUES ($1, $2, $3, $4, $5, 0)",
            member_id,
            "+8210" + str(member_id.int)[:8],
            role,
            _hash(PIN),
            _hash(DURESS),
        )
        await pool.execute(
            "INSERT INTO member_token (id, member_id, token_hash) VALUES ($1, $2, $3)",
            uuid.uuid4(),
            member_id,
            hash_token(tokens[role]),
        )
    staff_roles = {
        "dispatcher_a": ("dispatcher", (a,), False),
        "dispatcher_b": ("dispatcher", (b,), False),
        "city_wide": ("dispatcher", (), True),
        "volunteer_offered": ("volunteer", (), False),
        "volunteer_assigned": ("volunteer", (), False),
        "operator": ("operator", (), False),
    }
    for role, (kind, districts, city_wide) in staff_roles.items():
        staff_id = uuid.uuid4()
        tokens[role] = new_token(STAFF_PREFIX)
        ids[f"{role}_id"] = str(staff_id)
        ids[f"{role}_username"] = f"{role}-{staff_id.hex[:6]}"
        await pool.execute(
            "INSERT INTO staff (id, username, name, role, password_hash, city_wide, badge_number,"
            " active) VALUES ($1, $2, $3, $4, $5, $6, 'B-1', true)",
            staff_id,
            ids[f"{role}_username"],
            role,
            kind,
            _hash(PASSWORD),
            city_wide,
        )
        for d in districts:
            await pool.execute("INSERT INTO staff_district VALUES ($1, $2)", staff_id, d)
        await pool.execute(
            "INSERT INTO staff_token (id, staff_id, token_hash, expires_at)"
            " VALUES ($1, $2, $3, now() + interval '1 hour')",
            uuid.uuid4(),
            staff_id,
            hash_token(tokens[role]),
        )
    incident = uuid.uuid4()
    await pool.execute(
        "INSERT INTO incident (id, source, member_id, trigger, location, accuracy_m, district_id,"
        " emergency_id) VALUES ($1, 'app', $2, 'button',"
        " ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography, 8, $5, $1)",
        incident,
        uuid.UUID(ids["member_id"]),
        IN_A[0],
        IN_A[1],
        a,
    )
    ids["incident_id"] = str(incident)
    offer = uuid.uuid4()
    await pool.execute(
        "INSERT INTO offer (id, incident_id, volunteer_id, status, distance_m) VALUES"
        " ($1, $2, $3, 'offered', 250), ($4, $2, $5, 'accepted', 300)",
        offer,
        incident,
        uuid.UUID(ids["volunteer_offered_id"]),
        uuid.uuid4(),
        uuid.UUID(ids["volunteer_assigned_id"]),
    )
    await pool.execute(
        "INSERT INTO assignment (id, incident_id, kind, volunteer_id) VALUES ($1, $2,"
        " 'volunteer', $3)",
        uuid.uuid4(),
        incident,
        uuid.UUID(ids["volunteer_assigned_id"]),
    )
    ids["offer_id"] = str(offer)
    guardian = uuid.uuid4()
    await pool.execute(
        "INSERT INTO guardian (id, member_id, name, phone) VALUES ($1, $2, 'Mom', '+8210')",
        guardian,
        uuid.UUID(ids["member_id"]),
    )
    ids["guardian_id"] = str(guardian)
    place = await make_place("GS25 A", IN_A[0] + 0.001, IN_A[1])
    device = uuid.uuid4()
    secret = "ab" * 32
    await pool.execute(
        "INSERT INTO device (id, safe_place_id, label, secret, enabled) VALUES ($1, $2, 'c',"
        " $3, true)",
        device,
        place,
        secret,
    )
    ids["device_id"] = str(device)
    ids["staff_id"] = ids["dispatcher_a_id"]
    ids["place_id"] = str(place)
    async with pool.acquire() as conn:
        alarm = await create_alarm_account(conn, place_id=place, account="5A1E", supervision_s=600)
    ids["alarm_account_id"] = alarm["id"]
    async with pool.acquire() as conn:
        agency = await create_subscription(
            conn, name="CAD", url="http://127.0.0.1:9/cad", format="eido", district_codes=[]
        )
    ids["agency_subscription_id"] = agency["id"]
    async with pool.acquire() as conn:
        home = await create_home(
            conn, member_id=uuid.UUID(ids["member_id"]), address="A-dong 1", lat=IN_A[0],
            lon=IN_A[1],
        )  # fmt: skip
    ids["home_id"] = str(home.home_id)

    return World(ids, tokens, secret)


@pytest.fixture
async def world(pool, make_district, make_place) -> World:
    return await build_world(pool, make_district, make_place)


def _headers(world: World, role: str, body: bytes) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if role == "device":
        headers.update(sign_request(world.device_secret, body))
    elif role != "anonymous":
        headers["authorization"] = f"Bearer {world.tokens[role]}"
    return headers


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.method} {c.path}" for c in CALLS])
async def test_each_caller_gets_exactly_the_answer_in_the_table(client, world, call):
    got: dict[str, int] = {}
    for role in ROLES:
        body = orjson.dumps(world.body(call.body)) if call.body is not None else b""
        r = await client.request(
            call.method,
            world.fill(call.path, call.path_params),
            content=body or None,
            params=call.params,
            headers=_headers(world, role, body),
        )
        got[role] = r.status_code
        if r.status_code >= 400:
            assert {"error", "detail"} <= set(r.json()), r.text
    wrong = {
        role: (got[role], sorted(call.expected[role]))
        for role in ROLES
        if got[role] not in call.expected[role]
    }
    assert wrong == {}, f"(got, expected) per caller: {wrong}"


async def test_the_console_stream_admits_dispatchers_and_scopes_what_they_see(app, world):
    incident = world.ids["incident_id"]
    async with serve(app) as host:
        for role, expected in WS_TABLE["/v1/console/stream"].items():
            url = f"ws://{host}/v1/console/stream"
            if role == "device":
                url += f"?token={world.device_secret}"
            elif role != "anonymous":
                url += f"?token={world.tokens[role]}"
            if role == "anonymous":
                # No token: the first message must authenticate; anything else is refused.
                import websockets

                async with websockets.connect(url) as ws:
                    await ws.send('{"type": "hello"}')
                    with pytest.raises(websockets.ConnectionClosed):
                        await ws.recv()
                    code = ws.close_code
                assert code == expected, role
                continue
            messages, code = await ws_session(
                url, until=lambda ms: any(m["type"] == "snapshot" for m in ms), within=5
            )
            if isinstance(expected, int):
                assert code == expected, (role, code, messages)
                assert messages == []
                continue
            snapshot = next(m for m in messages if m["type"] == "snapshot")
            seen = {i["id"] for i in snapshot["incidents"]}
            assert (incident in seen) == (expected == "sees"), role


# -- the scope rules, one by one ---------------------------------------------------------------


async def test_another_members_alert_is_404_not_403(client, world):
    for path in ("/v1/alerts/{incident_id}", "/v1/alerts/{incident_id}/cancel"):
        method = "GET" if path.endswith("}") else "POST"
        r = await client.request(
            method,
            world.fill(path),
            json={"pin": PIN} if method == "POST" else None,
            headers={"authorization": f"Bearer {world.tokens['other_member']}"},
        )
        assert r.status_code == 404
        missing = await client.request(
            method,
            f"/v1/alerts/{uuid.uuid4()}" + ("/cancel" if method == "POST" else ""),
            json={"pin": PIN} if method == "POST" else None,
            headers={"authorization": f"Bearer {world.tokens['other_member']}"},
        )
        assert (missing.status_code, missing.json()["error"]) == (404, r.json()["error"])


async def test_another_districts_incident_is_hidden_from_lists_and_404_on_detail(client, world):
    incident = world.ids["incident_id"]

    async def listed(role: str) -> set[str]:
        r = await client.get(
            "/v1/console/incidents", headers={"authorization": f"Bearer {world.tokens[role]}"}
        )
        return {i["id"] for i in r.json()["incidents"]}

    assert incident in await listed("dispatcher_a")
    assert incident in await listed("city_wide")
    assert incident not in await listed("dispatcher_b")
    r = await client.get(
        f"/v1/console/incidents?district_id={uuid.uuid4()}",
        headers={"authorization": f"Bearer {world.tokens['dispatcher_b']}"},
    )
    assert r.json()["incidents"] == []
    r = await client.get(
        f"/v1/console/incidents/{incident}",
        headers={"authorization": f"Bearer {world.tokens['dispatcher_b']}"},
    )
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


async def test_a_volunteer_sees_the_exact_location_only_once_assigned(client, world, pool):
    incident = world.ids["incident_id"]
    h = {"authorization": f"Bearer {world.tokens['volunteer_offered']}"}
    offers = (await client.get("/v1/volunteers/offers", headers=h)).json()["offers"]
    assert [o["incident_id"] for o in offers] == [incident]
    assert offers[0]["distance_m"] == 250
    assert not {"lat", "lon", "location", "accuracy_m"} & set(offers[0])
    r = await client.get(f"/v1/volunteers/incidents/{incident}", headers=h)
    assert r.status_code == 404  # offered is not assigned
    r = await client.post(
        f"/v1/volunteers/offers/{world.ids['offer_id']}/accept", json={}, headers=h
    )
    assert r.status_code == 200
    assert r.json()["incident"]["lat"] == pytest.approx(IN_A[0])
    r = await client.get(f"/v1/volunteers/incidents/{incident}", headers=h)
    assert r.status_code == 200 and r.json()["lon"] == pytest.approx(IN_A[1])
    # Both reads of her location are in the access log (promise 6).
    volunteer = uuid.UUID(world.ids["volunteer_offered_id"])
    reads = await pool.fetch(
        "SELECT reason, staff_ids FROM location_access WHERE staff_ids @> ARRAY[$1]::uuid[]"
        " ORDER BY id",
        volunteer,
    )
    assert [tuple(r) for r in reads] == [
        ("volunteer_assigned", [volunteer]),
        ("volunteer_view", [volunteer]),
    ]
    # Once the incident is closed the location is no longer shown to her.
    await pool.execute(
        "UPDATE incident SET status = 'resolved', closed_at = now(), disposition = 'x'"
        " WHERE id = $1",
        uuid.UUID(incident),
    )
    r = await client.get(f"/v1/volunteers/incidents/{incident}", headers=h)
    assert r.json()["status"] == "resolved" and r.json()["lat"] is None


async def test_expired_staff_tokens_are_refused(client, world, pool):
    await pool.execute("UPDATE staff_token SET expires_at = now() - interval '1 second'")
    r = await client.get(
        "/v1/console/incidents",
        headers={"authorization": f"Bearer {world.tokens['dispatcher_a']}"},
    )
    assert r.status_code == 401


async def test_a_revoked_dispatcher_is_cut_off_an_open_console_within_the_ping_interval(
    settings, migrated, pool, make_district, make_place
):
    fast = settings.model_copy(update={"console_ping_s": 0.3})
    app = create_app(fast, process_name="ansim-tests-revoke")
    async with app.router.lifespan_context(app), serve(app) as host:
        world = await build_world(pool, make_district, make_place)
        url = f"ws://{host}/v1/console/stream?token={world.tokens['dispatcher_a']}"
        session = asyncio.create_task(ws_session(url, within=5))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            r = await http.post(
                f"/v1/admin/staff/{world.ids['dispatcher_a_id']}/revoke-tokens",
                headers={"authorization": f"Bearer {world.tokens['operator']}"},
            )
            assert r.json() == {"revoked": 1}
        messages, code = await session
    assert code == 4401
    assert messages[0]["type"] == "hello"
