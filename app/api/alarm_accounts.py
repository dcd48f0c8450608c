"""Operators register alarm-panel accounts (SIA DC-09) to stores (docs/alarm-panels.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from app.admin.service import audit
from app.api import answers
from app.api.deps import CurrentOperator, PoolDep, SettingsDep
from app.api.schemas import StrictModel
from app.receiver import accounts

router = APIRouter(prefix="/v1/admin/alarm-accounts", tags=["operators"])


class AlarmAccountIn(StrictModel):
    place_id: uuid.UUID = Field(description="The store the panel protects.")
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


@router.post(
    "",
    status_code=201,
    summary="Register an alarm panel's account to a store",
    response_model=answers.AlarmAccountOut,
)
async def create_alarm_account(
    body: AlarmAccountIn, operator: CurrentOperator, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        created = await accounts.create_account(
            conn,
            place_id=body.place_id,
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
    return created


@router.get(
    "", summary="Alarm accounts, offline ones first", response_model=answers.AlarmAccountsOut
)
async def list_alarm_accounts(
    _operator: CurrentOperator, pool: PoolDep, limit: Annotated[int, Query(ge=1, le=1000)] = 1000
) -> dict[str, Any]:
    return {"accounts": await accounts.list_accounts(pool, limit=limit)}


@router.get(
    "/{alarm_account_id}/log",
    summary="An account's log, newest first (unknown codes too)",
    response_model=answers.AlarmEventsOut,
)
async def alarm_account_log(
    alarm_account_id: uuid.UUID,
    _operator: CurrentOperator,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    await accounts.get_account(pool, alarm_account_id)
    return {"events": await accounts.account_log(pool, alarm_account_id, limit=limit)}
