"""Operators register alarm-panel accounts (SIA DC-09) to stores or to members' homes
(docs/alarm-panels.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.admin.service import audit
from app.api.deps import CurrentOperator, PoolDep, SettingsDep
from app.api.schemas import StrictModel
from app.receiver import accounts

router = APIRouter(prefix="/v1/admin/alarm-accounts", tags=["operators"])


class AlarmAccountIn(StrictModel):
    place_id: uuid.UUID | None = Field(
        None, description="The store the panel protects (or give home_id)."
    )
    home_id: uuid.UUID | None = Field(
        None, description="The member's home the panel protects (or give place_id)."
    )
    account: str = Field(min_length=3, max_length=16, description="3-16 hex characters.")
    prefix: str = Field("0", max_length=6, description="Line prefix, up to 6 hex.")
    key: str | None = Field(
        None, max_length=64, description="AES key: 16/24/32 ASCII or 32/48/64 hex characters."
    )
    key_hex: bool | None = Field(None, description="Read the key as hex (None: by its length).")
    supervision_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    window_past_s: float = Field(40.0, ge=0, le=3600)
    window_future_s: float = Field(20.0, ge=0, le=3600)
    label: str | None = Field(None, max_length=200)


class AlarmAccountOut(BaseModel):
    id: str
    account: str
    prefix: str
    safe_place_id: str | None = Field(description="The store it protects, or null")
    home_id: str | None = Field(description="The member's home it protects, or null")
    device_id: str = Field(description="Its device (kind panel): health, enable/disable")
    label: str | None
    encrypted: bool = Field(description="Has an AES key: takes encrypted messages only")
    supervision_s: float
    window_past_s: float
    window_future_s: float
    enabled: bool
    last_message_at: str | None
    created_at: str
    offline_since: str | None
    troubles: list[str]
    last_heartbeat_at: str | None


class AlarmAccountsOut(BaseModel):
    accounts: list[AlarmAccountOut]


class AlarmEventOut(BaseModel):
    id: int
    received_at: str
    token: str
    seq: str
    code: str
    qualifier: str | None
    zone: str | None
    area: str | None
    action: str = Field(
        description="incident, trouble, restore, tamper, test, arming, log or unknown"
    )
    incident_id: str | None
    detail: dict[str, Any]


class AlarmLogOut(BaseModel):
    events: list[AlarmEventOut]


@router.post(
    "",
    status_code=201,
    summary="Register an alarm panel's account to a store or a member's home",
    responses={
        400: {"description": "Neither or both of place_id and home_id; a bad key or number"},
        404: {"description": "No such store or home"},
        409: {"description": "That account is registered on that prefix already"},
    },
)
async def create_alarm_account(
    body: AlarmAccountIn, operator: CurrentOperator, pool: PoolDep, settings: SettingsDep
) -> AlarmAccountOut:
    async with pool.acquire() as conn, conn.transaction():
        created = await accounts.create_account(
            conn,
            place_id=body.place_id,
            home_id=body.home_id,
            account=body.account,
            prefix=body.prefix,
            key=body.key,
            key_hex=body.key_hex,
            supervision_s=body.supervision_s or settings.alarm_supervision_s,
            window_past_s=body.window_past_s,
            window_future_s=body.window_future_s,
            label=body.label,
        )
        await audit(
            conn,
            kind="admin_alarm_account_created",
            operator_id=operator.id,
            device_id=uuid.UUID(created["device_id"]),
            detail={"alarm_account_id": created["id"]},
        )
    return AlarmAccountOut.model_validate(created)


@router.get("", summary="Alarm accounts, offline ones first")
async def list_alarm_accounts(
    _operator: CurrentOperator, pool: PoolDep, limit: Annotated[int, Query(ge=1, le=1000)] = 1000
) -> AlarmAccountsOut:
    found = await accounts.list_accounts(pool, limit=limit)
    return AlarmAccountsOut(accounts=[AlarmAccountOut.model_validate(a) for a in found])


@router.get("/{alarm_account_id}/log", summary="An account's log, newest first (unknown codes too)")
async def alarm_account_log(
    alarm_account_id: uuid.UUID,
    _operator: CurrentOperator,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlarmLogOut:
    await accounts.get_account(pool, alarm_account_id)
    found = await accounts.account_log(pool, alarm_account_id, limit=limit)
    return AlarmLogOut(events=[AlarmEventOut.model_validate(e) for e in found])
