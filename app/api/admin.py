"""City operators: the location access log, security events, panic buttons, credentials.

Every route needs the operator role; every action is audited in ``security_event``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from app.admin import service
from app.admin.service import Page
from app.api import answers
from app.api.deps import CurrentOperator, PoolDep, SettingsDep
from app.api.schemas import QueryText, StrictModel

router = APIRouter(prefix="/v1/admin", tags=["operators"])

Limit = Annotated[int, Query(ge=1, le=1000)]
BeforeId = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="Keyset pagination: ids below this")
]
# security_event ids are 32-bit.
BeforeEventId = Annotated[
    int | None, Query(ge=1, le=2**31 - 1, description="Keyset pagination: ids below this")
]
MAX_GRACE_S = 30 * 24 * 3600


def _page(
    since: datetime | None, until: datetime | None, before_id: int | None, limit: int
) -> Page:
    return Page(since=since, until=until, before_id=before_id, limit=limit)


@router.get(
    "/location-access",
    summary="Who read which woman's location, when and why (append-only), newest first",
    response_model=answers.LocationAccessOut,
)
async def location_access(
    _operator: CurrentOperator,
    pool: PoolDep,
    incident_id: uuid.UUID | None = None,
    staff_id: uuid.UUID | None = None,
    reason: Annotated[QueryText | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: BeforeId = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    entries = await service.location_access(
        pool,
        incident_id=incident_id,
        staff_id=staff_id,
        reason=reason,
        page=_page(since, until, before_id, limit),
    )
    return {"entries": entries}


@router.get(
    "/security-events",
    summary="Rejected signatures, replays, PIN failures, audits",
    response_model=answers.SecurityEventsOut,
)
async def security_events(
    _operator: CurrentOperator,
    pool: PoolDep,
    kind: Annotated[QueryText | None, Query(max_length=48)] = None,
    device_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: BeforeEventId = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    events = await service.security_events(
        pool,
        kind=kind,
        device_id=device_id,
        member_id=member_id,
        page=_page(since, until, before_id, limit),
    )
    return {"events": events}


@router.get(
    "/devices",
    summary="Panic buttons with their health (offline ones first)",
    response_model=answers.DevicesOut,
)
async def list_devices(
    _operator: CurrentOperator,
    pool: PoolDep,
    settings: SettingsDep,
    offline: bool | None = None,
    enabled: bool | None = None,
    district_code: Annotated[QueryText | None, Query(max_length=32)] = None,
    limit: Limit = 500,
) -> dict[str, Any]:
    devices = await service.list_devices(
        pool,
        settings,
        offline=offline,
        enabled=enabled,
        district_code=district_code,
        limit=limit,
    )
    return {"devices": devices, "offline_after_s": settings.device_offline_after_s}


@router.get(
    "/devices/{device_id}",
    summary="One panic button and its health",
    response_model=answers.DeviceOut,
)
async def get_device(
    device_id: uuid.UUID, _operator: CurrentOperator, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    return await service.get_device(pool, settings, device_id)


@router.post(
    "/devices/{device_id}/disable",
    summary="Refuse every signal of this button",
    response_model=answers.DeviceOut,
)
async def disable_device(
    device_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    return await service.set_device_enabled(
        pool, settings, operator_id=operator.id, device_id=device_id, enabled=False
    )


@router.post(
    "/devices/{device_id}/enable",
    summary="Accept this button's signals again",
    response_model=answers.DeviceOut,
)
async def enable_device(
    device_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    return await service.set_device_enabled(
        pool, settings, operator_id=operator.id, device_id=device_id, enabled=True
    )


class RotateIn(StrictModel):
    grace_seconds: int = Field(
        86400,
        ge=0,
        le=MAX_GRACE_S,
        description="How long the previous secret stays valid (0: revoke it now, e.g. stolen)",
    )


@router.post(
    "/devices/{device_id}/rotate-secret",
    summary="A new secret for the button (shown once); the old one stays valid for a grace period",
    response_model=answers.RotatedSecret,
)
async def rotate_secret(
    device_id: uuid.UUID, body: RotateIn, operator: CurrentOperator, pool: PoolDep
) -> dict[str, Any]:
    return await service.rotate_device_secret(
        pool, operator_id=operator.id, device_id=device_id, grace_seconds=body.grace_seconds
    )


@router.post(
    "/staff/{staff_id}/revoke-tokens",
    summary="End every session of a staff member (consoles close within the ping interval)",
    response_model=answers.Revoked,
)
async def revoke_staff_tokens(
    staff_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep
) -> dict[str, int]:
    revoked = await service.revoke_staff_tokens(pool, operator_id=operator.id, staff_id=staff_id)
    return {"revoked": revoked}


@router.post(
    "/members/{member_id}/revoke-tokens",
    summary="Revoke a member's app credentials (lost phone)",
    response_model=answers.Revoked,
)
async def revoke_member_tokens(
    member_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep
) -> dict[str, int]:
    revoked = await service.revoke_member_tokens(pool, operator_id=operator.id, member_id=member_id)
    return {"revoked": revoked}
