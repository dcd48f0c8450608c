"""The phone app: raise an SOS, send the live trail, see her alert, cancel it."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app import logs, metrics
from app.api.deps import (
    CurrentMember,
    PoolDep,
    SessionDep,
    SettingsDep,
    bearer_token,
    kick_relay,
    member_from_token,
)
from app.api.schemas import DistrictOut, SafePlaceOut, StrictModel
from app.config import Settings
from app.errors import Unauthorized, error_response
from app.incidents import alerts
from app.incidents.intake import TRIGGERS, NotAJSONObject, load_json_object, parse_sos

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/alerts", tags=["phone alerts"])


class SOSLocation(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, description="Horizontal accuracy (metres)")
    captured_at: datetime | None = Field(None, description="When the fix was taken (ISO 8601)")


class SOSRequest(BaseModel):
    """What the app should send. The server accepts any JSON object (see the endpoint)."""

    client_alert_id: uuid.UUID = Field(description="Made on the phone; the idempotency key")
    trigger: str = Field("button", description=f"One of {sorted(TRIGGERS)}")
    silent: bool = False
    location: SOSLocation | None = None
    battery_pct: int | None = Field(None, ge=0, le=100)
    note: str | None = Field(None, max_length=1000)


class WarningOut(BaseModel):
    code: str = Field(description="Stable code, e.g. location_invalid, trigger_unknown")
    field: str
    detail: str


class SOSResponse(BaseModel):
    incident_id: uuid.UUID
    status: str
    received_at: datetime
    district: DistrictOut | None
    nearest_safe_places: list[SafePlaceOut]
    flags: list[str] = Field(description="Conditions and warning codes recorded on the incident")
    warnings: list[WarningOut]


_SOS_DESCRIPTION = """
Raise an SOS. **Forgiving by design**: any JSON object from an authenticated member creates an
incident (or replays one). Parts that cannot be used (missing/out-of-range/non-finite coordinates,
unknown trigger, unknown fields, missing or malformed `client_alert_id`, NUL bytes) are dropped or
cleaned, flagged on the incident and listed in `warnings`. An alert without a location is accepted.

* `201`: created and committed; `200`: the same `client_alert_id` was already received from this
  member (same incident, nothing new created).
* 4xx only for: no/invalid token (401), a body that is not a JSON object (400), a body over the
  size limit (413).
* `nearest_safe_places`: the nearest places open now, by geodesic distance (metres).
"""


@router.post(
    "",
    summary="Raise an SOS",
    description=_SOS_DESCRIPTION,
    status_code=201,
    response_model=SOSResponse,
    responses={200: {"model": SOSResponse, "description": "Replay of a known client_alert_id"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SOSRequest.model_json_schema()}},
        }
    },
)
async def raise_sos(request: Request) -> Response:
    # The pool and settings come straight from the app's state, not as dependencies: resolving
    # two dependencies was most of what the framework spent on an SOS request once routed.
    started = time.perf_counter()
    state = request.app.state
    pool: asyncpg.Pool = state.pool
    settings: Settings = state.settings
    # Her token is checked by the insert statement itself (one round trip less per SOS), so
    # it is looked up on its own only when the body is refused: a bad token is a 401 whatever
    # the body, as everywhere.
    token = bearer_token(request)
    try:
        data = load_json_object(await request.body())
    except NotAJSONObject:
        if await member_from_token(pool, token) is None:
            raise Unauthorized("invalid or revoked member token") from None
        raise
    sos = parse_sos(data, settings, now=datetime.now(UTC))
    request_id = logs.request_id_of(request.scope)
    result = await alerts.raise_alert(
        pool=pool, settings=settings, token=token, sos=sos, request_id=request_id
    )
    if settings.fault == "kill_after_commit" and settings.environment == "test":
        # Fault campaign (tests/faults): die after the commit, before the publish and before
        # the phone hears back.
        os.kill(os.getpid(), signal.SIGKILL)
    if result.to_publish is not None:
        # Published before the answer: a 2xx means the alert is in the stream or, if Redis
        # refused it, back with the relay.
        await state.relay.publish(result.to_publish)
    else:
        kick_relay(request)  # a folded report's timeline entry
    metrics.sos_accepted("app", created=result.created, folded=result.folded, started=started)
    if log.isEnabledFor(logging.INFO):  # (JSON logs; otherwise the line costs nothing)
        routed = result.to_publish is not None and result.to_publish.summary is not None
        outcome = "created" if result.created else "folded" if result.folded else "replayed"
        log.info(
            "sos accepted: incident %s",
            result.body["incident_id"],
            extra={
                "request_id": request_id,
                "incident_id": result.body["incident_id"],
                "outcome": outcome,
                # Routed here (its console message is out) or left to a dispatcher.
                "routed_at_intake": routed,
            },
        )
    return Response(
        orjson.dumps(result.body),
        status_code=201 if result.created else 200,
        media_type="application/json",
    )


class TrailPointIn(StrictModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=1_000_000)
    captured_at: datetime | None = None


class TrailIn(StrictModel):
    points: Annotated[list[TrailPointIn], Field(min_length=1, max_length=500)]


class TrailOut(BaseModel):
    incident_id: uuid.UUID
    stored: int


@router.post(
    "/{incident_id}/locations",
    summary="Send points of the live trail",
    response_model=TrailOut,
    status_code=202,
    responses={404: {"description": "No such alert of this member"}},
)
async def add_locations(
    incident_id: uuid.UUID,
    body: TrailIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
) -> dict[str, Any]:
    points = [
        alerts.TrailPoint(p.lat, p.lon, p.accuracy_m, _aware(p.captured_at)) for p in body.points
    ]
    stored = await alerts.add_trail(
        pool=pool, member_id=member_id, incident_id=incident_id, points=points
    )
    kick_relay(request)
    return {"incident_id": incident_id, "stored": stored}


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class ResponderOut(BaseModel):
    kind: str
    name: str
    badge_number: str | None = Field(description="Ask to see this on the volunteer's ID")
    assigned_at: datetime


class AlertView(BaseModel):
    incident_id: uuid.UUID
    status: str
    received_at: datetime
    trigger: str
    silent: bool
    location: dict[str, Any] | None
    district: DistrictOut | None
    police_acknowledged: bool
    responders: list[ResponderOut]
    nearest_safe_places: list[SafePlaceOut]


@router.get(
    "/{incident_id}",
    summary="Her own view of an alert",
    response_model=AlertView,
    responses={404: {"description": "No such alert of this member"}},
)
async def get_alert(
    incident_id: uuid.UUID, member_id: CurrentMember, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    return await alerts.view_alert(
        pool=pool, settings=settings, member_id=member_id, incident_id=incident_id
    )


class CancelIn(StrictModel):
    pin: str = Field(min_length=1, max_length=32)


class CancelOut(BaseModel):
    incident_id: uuid.UUID
    status: str
    cancelled_at: datetime


@router.post(
    "/{incident_id}/cancel",
    summary="Cancel an alert with her PIN",
    description=(
        "The right PIN cancels. The duress PIN answers exactly like a cancel (and her own view "
        "shows the alert cancelled) but the incident is escalated. A wrong PIN is refused "
        "(403 `WrongPin`); repeated wrong PINs escalate. After `cancel_pin_lockout_after` (5) "
        "wrong PINs in a row every cancel is refused, whatever the PIN, for "
        "`cancel_pin_lockout_s` (15 min): 429 `CancelLockedOut` with `Retry-After`; the alert "
        "stays open (her duress PIN still escalates it, silently)."
    ),
    response_model=CancelOut,
    responses={
        403: {"description": "Wrong PIN"},
        404: {"description": "No such alert"},
        429: {"description": "CancelLockedOut: too many wrong PINs; see Retry-After"},
    },
)
async def cancel(
    incident_id: uuid.UUID,
    body: CancelIn,
    request: Request,
    member_id: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    result = await alerts.cancel_alert(
        session=session,
        settings=settings,
        member_id=member_id,
        incident_id=incident_id,
        pin=body.pin,
        source_ip=request.client.host if request.client else None,
    )
    if result.locked_for_s is not None:
        return error_response(
            429,
            "CancelLockedOut",
            "too many wrong PINs: cancelling is locked for a while",
            headers={"Retry-After": str(result.locked_for_s)},
        )
    if result.refused:
        return error_response(403, "WrongPin", "wrong PIN")
    return result.body
