"""Police consoles: the live WebSocket stream and REST for reading and acting on incidents.

The protocol is documented in docs/dispatch.md."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.api import answers
from app.api.deps import (
    CurrentDispatcher,
    CurrentStaff,
    PoolDep,
    RedisDep,
    SessionDep,
    SettingsDep,
    StaffPrincipal,
    kick_relay,
    staff_from_token,
)
from app.api.schemas import StrictModel
from app.devices import health as device_health
from app.dispatch import console_log
from app.dispatch.console_log import ConsoleEntry, ConsoleHub, Wake
from app.dispatch.coverage import ConsolePresence, console_channels, coverage_status
from app.dispatch.worker import read_dead_letters
from app.errors import TRANSIENT, Conflict, Forbidden, NotFound, transient
from app.incidents import lifecycle, timeline
from app.incidents.console_service import (
    incident_detail,
    incident_summary,
    list_incidents,
    log_location_access,
    log_location_reads,
)
from app.models import Assignment, Staff

router = APIRouter(prefix="/v1/console", tags=["console"])


#: ``status`` of the incident list: open, closed, all, or one status.
IncidentFilter = Literal[
    "open", "closed", "all", "new", "acknowledged", "responding", "on_scene", "resolved",
    "false_alarm", "cancelled",
]  # fmt: skip


class AckIn(StrictModel):
    pass


class AssignIn(StrictModel):
    kind: Literal["unit", "volunteer"]
    unit: str | None = Field(None, min_length=1, max_length=64)
    volunteer_id: uuid.UUID | None = None


class StatusIn(StrictModel):
    status: Literal["responding", "on_scene", "resolved", "false_alarm"]
    disposition: str | None = Field(None, max_length=500)


def _actor(staff: StaffPrincipal) -> str:
    return f"staff:{staff.id}"


async def _in_scope(pool: Any, staff: StaffPrincipal, incident_id: uuid.UUID) -> dict[str, Any]:
    summary = await incident_summary(pool, incident_id)
    if summary is None or not staff.sees(summary["district_id"], summary["covered_by"]):
        raise NotFound(f"incident {incident_id} not found")
    return summary


@router.get(
    "/incidents",
    summary="Incidents in the dispatcher's scope, newest first",
    response_model=answers.IncidentList,
)
async def get_incidents(
    staff: CurrentDispatcher,
    pool: PoolDep,
    status: IncidentFilter = "open",
    district_id: uuid.UUID | None = None,
    source: Literal["app", "button", "sensor", "safe_return"] | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    incidents = await list_incidents(
        pool,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
        status=status,
        district_id=district_id,
        source=source,
        since=since,
        limit=limit,
    )
    await log_location_access(
        pool,
        staff_id=staff.id,
        incident_ids=[uuid.UUID(i["id"]) for i in incidents if i["lat"] is not None],
        reason="console_list",
    )
    return {"incidents": incidents}


@router.get(
    "/incidents/{incident_id}",
    summary="One incident: timeline, trail, responders",
    response_model=answers.IncidentDetail,
)
async def get_incident(
    incident_id: uuid.UUID, staff: CurrentDispatcher, pool: PoolDep
) -> dict[str, Any]:
    return await incident_detail(
        pool,
        incident_id=incident_id,
        staff_id=staff.id,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
    )


@router.post(
    "/incidents/{incident_id}/ack",
    summary="Acknowledge (stops the escalation clock)",
    response_model=answers.IncidentSummary,
)
async def ack(
    incident_id: uuid.UUID,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
    body: AckIn | None = None,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    await lifecycle.acknowledge(session, incident_id=incident_id, actor=_actor(staff))
    return await _commit_and_kick(request, session, pool, incident_id)


async def _commit_and_kick(
    request: Request, session: AsyncSession, pool: asyncpg.Pool, incident_id: uuid.UUID
) -> dict[str, Any]:
    # Commit here (not in the dependency's teardown) so the relay is kicked after the commit.
    await session.commit()
    kick_relay(request)
    summary = await incident_summary(pool, incident_id)
    assert summary is not None
    return summary


@router.post(
    "/incidents/{incident_id}/status",
    summary="responding, on_scene, resolved, false_alarm",
    response_model=answers.IncidentSummary,
)
async def set_status(
    incident_id: uuid.UUID,
    body: StatusIn,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    incident = await lifecycle.lock_incident(session, incident_id)
    await lifecycle.transition(
        session,
        incident=incident,
        target=body.status,
        actor=_actor(staff),
        disposition=body.disposition,
    )
    return await _commit_and_kick(request, session, pool, incident_id)


@router.post(
    "/incidents/{incident_id}/assign",
    summary="Assign a police unit or a volunteer",
    response_model=answers.AssignOut,
)
async def assign(
    incident_id: uuid.UUID,
    body: AssignIn,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    if (body.kind == "unit") == (body.unit is None) or (body.kind == "volunteer") == (
        body.volunteer_id is None
    ):
        raise Conflict("give `unit` for kind=unit or `volunteer_id` for kind=volunteer")
    incident = await lifecycle.lock_incident(session, incident_id)
    if incident.status in lifecycle.CLOSED:
        raise Conflict(f"incident is {incident.status}")
    if body.volunteer_id is not None:
        volunteer = await session.get(Staff, body.volunteer_id)
        if volunteer is None or volunteer.role != "volunteer" or not volunteer.active:
            raise NotFound(f"volunteer {body.volunteer_id} not found")
    assignment = Assignment(
        incident_id=incident_id,
        kind=body.kind,
        unit=body.unit,
        volunteer_id=body.volunteer_id,
        assigned_by=staff.id,
    )
    session.add(assignment)
    await session.flush()
    await timeline.record(
        session,
        incident_id=incident_id,
        kind="assigned",
        actor=_actor(staff),
        data={"kind": body.kind, "unit": body.unit, "volunteer_id": str(body.volunteer_id or "")},
    )
    summary = await _commit_and_kick(request, session, pool, incident_id)
    return {
        "assignment": {
            "id": str(assignment.id),
            "kind": assignment.kind,
            "unit": assignment.unit,
            "volunteer_id": str(assignment.volunteer_id) if assignment.volunteer_id else None,
        },
        "incident": summary,
    }


def _operator_or_supervisor(staff: StaffPrincipal) -> None:
    if not (staff.role == "operator" or (staff.role == "dispatcher" and staff.city_wide)):
        raise Forbidden("operators and city-wide dispatchers only")


@router.get(
    "/dead-letters",
    summary="Stream entries that could not be processed",
    response_model=answers.DeadLetters,
)
async def dead_letters(
    staff: CurrentStaff,
    redis: RedisDep,
    settings: SettingsDep,
    count: Annotated[int, Query(ge=1, description="At most 1,000 are returned")] = 100,
) -> dict[str, Any]:
    _operator_or_supervisor(staff)
    return {"entries": await read_dead_letters(redis, settings, count=min(count, 1000))}


@router.get(
    "/coverage",
    summary="Open consoles per district; the districts nobody watches",
    response_model=answers.CoverageOut,
)
async def coverage(
    staff: CurrentStaff, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> dict[str, Any]:
    _operator_or_supervisor(staff)
    return await coverage_status(pool, redis, settings)


# -- WebSocket -------------------------------------------------------------------------------


class _AccessWriter:
    """Promise 6 on the stream, for all of a process's console connections together: one
    INSERT per second however many consoles are connected, one row per incident naming every
    console's staff member that read it since the last write (migration 0009). With K consoles
    an SOS adds one row, not K (two when a write falls between the consoles' reads: after a
    quiet second, the first console sent it writes at once)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.staff_ids: list[uuid.UUID] = []
        self.incident_ids: list[uuid.UUID] = []
        self.flushed_at = time.monotonic()

    def add(self, staff_id: uuid.UUID, incident_id: uuid.UUID) -> None:
        self.staff_ids.append(staff_id)
        self.incident_ids.append(incident_id)

    @property
    def due(self) -> bool:
        """Reads are waiting and the last write is a second old: ``flush`` would write.
        (Asked after every frame to every console, so it is a check, not a coroutine.)"""
        return bool(self.incident_ids) and time.monotonic() - self.flushed_at >= 1

    async def flush(self, *, force: bool = False) -> None:
        if not self.incident_ids or not (force or self.due):
            return
        staff_ids, incident_ids = self.staff_ids, self.incident_ids
        self.staff_ids, self.incident_ids = [], []
        self.flushed_at = time.monotonic()
        try:
            await log_location_reads(
                self.pool, staff_ids=staff_ids, incident_ids=incident_ids, reason="console_stream"
            )
        except TRANSIENT as exc:
            if not transient(exc):
                raise
            # The database is down: keep the reads to log them later; the consoles stay up.
            self.staff_ids[:0], self.incident_ids[:0] = staff_ids, incident_ids


def _access_writer(ws: WebSocket) -> _AccessWriter:
    state = ws.app.state
    writer: _AccessWriter | None = getattr(state, "console_access_writer", None)
    if writer is None or writer.pool is not state.pool:
        writer = state.console_access_writer = _AccessWriter(state.pool)
    return writer


class _AccessLog:
    """Each incident whose location a console was sent is logged in ``location_access`` once
    per connection (its staff member among a row's ``staff_ids``), in the process's batches
    (the socket holds no database connection between them)."""

    def __init__(self, writer: _AccessWriter, staff_id: uuid.UUID) -> None:
        self.writer = writer
        self.pool = writer.pool
        self.staff_id = staff_id
        self.logged: set[uuid.UUID] = set()

    def note(self, incident: dict[str, Any] | None) -> None:
        if incident and incident.get("lat") is not None:
            self.note_id(uuid.UUID(incident["id"]))

    def note_id(self, incident_id: uuid.UUID | None) -> None:
        if incident_id is not None and incident_id not in self.logged:
            self.logged.add(incident_id)
            self.writer.add(self.staff_id, incident_id)

    async def flush(self, *, force: bool = False) -> None:
        await self.writer.flush(force=force)


async def _send(ws: WebSocket, message: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(message).decode())


#: The most console-log messages one ``batch`` frame carries.
BATCH_MAX = 200


async def _send_texts(ws: WebSocket, cursor: str, texts: list[str]) -> None:
    """One frame: a message alone, or several (each already serialised once for every socket)
    as a ``batch`` whose cursor is the last one they cover."""
    if len(texts) == 1:
        await ws.send_text(texts[0])
    else:
        messages = ",".join(texts)
        await ws.send_text(f'{{"type":"batch","cursor":"{cursor}","messages":[{messages}]}}')


async def _authenticate(
    ws: WebSocket, token: str | None, cursor: str | None, batch: bool
) -> tuple[StaffPrincipal | None, str, str | None, bool]:
    pool = ws.app.state.pool
    if token is None:
        try:
            first = orjson.loads(await asyncio.wait_for(ws.receive_text(), timeout=5))
        except (TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect):
            return None, "", cursor, batch
        if not isinstance(first, dict) or first.get("type") != "auth":
            return None, "", cursor, batch
        token = str(first.get("token") or "")
        cursor = first.get("cursor") or cursor
        batch = batch or first.get("batch") is True
    staff = await staff_from_token(pool, token) if token else None
    return staff, token, cursor, batch


@router.websocket("/stream")
async def stream(
    ws: WebSocket, token: str | None = None, cursor: str | None = None, batch: bool = False
) -> None:
    settings = ws.app.state.settings
    redis = ws.app.state.redis
    hub: ConsoleHub = ws.app.state.console_hub
    await ws.accept()
    staff, token, cursor, batch = await _authenticate(ws, token, cursor, batch)
    if staff is None:
        await ws.close(code=4401, reason="invalid or missing dispatcher token")
        return
    if staff.role != "dispatcher":
        await ws.close(code=4403, reason="the dispatcher role is needed")
        return
    if cursor is not None:
        try:
            console_log.cursor_key(cursor)
        except ValueError:
            await ws.close(code=4400, reason="bad cursor")
            return

    def visible(entry: ConsoleEntry) -> bool:
        # (Asked for every message and console: no sets built, no ids parsed.)
        return staff.sees_district(entry.district_id) or (
            bool(entry.also) and not staff.district_ids.isdisjoint(entry.also)
        )

    queue = hub.subscribe()  # before replay/snapshot, so nothing falls between them
    presence: ConsolePresence = ws.app.state.console_presence
    watching = await presence.join(
        console_channels(city_wide=staff.city_wide, district_ids=staff.district_ids)
    )
    access = _AccessLog(_access_writer(ws), staff.id)
    try:
        await _send(
            ws,
            {
                "type": "hello",
                "cursor": cursor or await console_log.last_cursor(redis, settings),
                "staff": {
                    "id": str(staff.id),
                    "name": staff.name,
                    "city_wide": staff.city_wide,
                    "district_ids": sorted(str(d) for d in staff.district_ids),
                },
                "max_lifetime_s": settings.console_max_lifetime_s,
                "batch": batch,
            },
        )
        replayed: list[ConsoleEntry] = []
        complete = False
        if cursor is not None:
            replayed, complete = await console_log.replay_after(redis, settings, cursor)
        if cursor is None or not complete:
            cursor = await console_log.last_cursor(redis, settings)
            incidents = await list_incidents(
                ws.app.state.pool,
                city_wide=staff.city_wide,
                district_ids=staff.district_ids,
                status="open",
                limit=settings.console_snapshot_max,
                order="urgent",
            )
            devices = await device_health.console_devices(
                ws.app.state.pool, city_wide=staff.city_wide, district_ids=staff.district_ids
            )
            await _send(
                ws,
                {"type": "snapshot", "cursor": cursor, "incidents": incidents, "devices": devices},
            )
            for incident in incidents:
                access.note(incident)
        last = console_log.cursor_key(cursor)
        texts: list[str] = []
        for entry in replayed:
            if visible(entry):
                texts.append(entry.text)
                access.note_id(entry.located_incident)
            last, cursor = entry.key, entry.cursor
            if len(texts) == (BATCH_MAX if batch else 1):
                await _send_texts(ws, cursor, texts)
                texts = []
        if texts:
            await _send_texts(ws, cursor, texts)
        await access.flush(force=True)
        await _live(ws, queue, visible, last, cursor, settings, access, token, batch)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(queue)
        await presence.leave(watching)
        with contextlib.suppress(Exception):
            await access.flush(force=True)


class _Ticker:
    """Puts ``Wake.TICK`` in a console's queue once ``due`` passes. The console's loop moves
    ``due`` on with every frame it sends (an attribute store), so an idle console is still
    pinged and its session checked on time, while a busy one waits on its queue alone. (Each
    message used to race ``queue.get()`` against the client and a timeout: a task, a timer and
    four callbacks per message and console, a fifth of the API's CPU with 50 consoles.)"""

    def __init__(self, queue: console_log.Subscription, due: float, period: float) -> None:
        self.due = due
        self.task = asyncio.create_task(self._run(queue, period))

    async def _run(self, queue: console_log.Subscription, period: float) -> None:
        while True:
            delay = self.due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(asyncio.QueueFull):  # full: the loop is awake anyway
                queue.put_nowait(Wake.TICK)
            self.due = time.monotonic() + period


async def _live(
    ws: WebSocket,
    queue: console_log.Subscription,
    visible: Any,
    last: tuple[int, int],
    cursor: str,
    settings: Any,
    access: _AccessLog,
    token: str,
    batch: bool,
) -> None:
    """Live messages in log order. A console that asked for ``batch`` gets the messages that
    are already waiting when it is sent to as one ``batch`` frame (one write instead of one per
    message; nothing waits to fill a batch), so a console that falls behind in a flood of
    alerts catches up in far fewer writes. With nothing to send for the ping interval it gets
    a ping carrying its cursor."""
    ping_s = settings.console_ping_s
    ends_at = time.monotonic() + settings.console_max_lifetime_s
    recheck_at = time.monotonic() + ping_s
    ticker = _Ticker(queue, min(time.monotonic() + ping_s, ends_at), ping_s)
    receiver = asyncio.create_task(_drain_client(ws, queue))
    try:
        while True:
            if time.monotonic() >= recheck_at:
                # A revoked or expired session stops receiving locations within one ping
                # interval, not at the end of the socket's lifetime.
                if not await _still_valid(access.pool, token):
                    await ws.close(code=4401, reason="session revoked or expired")
                    return
                recheck_at = time.monotonic() + ping_s
            if time.monotonic() >= ends_at:
                await _send(ws, {"type": "reconnect", "cursor": cursor, "reason": "max_lifetime"})
                await ws.close(code=4000, reason="max lifetime; reconnect with your cursor")
                return
            if receiver.done():
                return
            entries = [await queue.get()]
            while batch and len(entries) < BATCH_MAX and not queue.empty():
                entries.append(queue.get_nowait())
            texts = []
            due = given_up = False
            for item in entries:
                if item is None:  # the hub gave up on this connection; nothing follows
                    given_up = True
                    break
                if item is Wake.GONE:
                    return
                if item is Wake.TICK:
                    due = True
                    continue
                if item.key <= last:
                    continue  # already sent during replay
                last, cursor = item.key, item.cursor
                if visible(item):
                    texts.append(item.text)
                    access.note_id(item.located_incident)
            if texts:
                await _send_texts(ws, cursor, texts)
                ticker.due = min(time.monotonic() + ping_s, ends_at)
                if access.writer.due:
                    await access.flush()
            elif due and time.monotonic() < ends_at:
                await _send(ws, {"type": "ping", "cursor": cursor})
                ticker.due = min(time.monotonic() + ping_s, ends_at)
                await access.flush(force=True)
            if given_up:
                await _send(ws, {"type": "reconnect", "cursor": cursor, "reason": "too_slow"})
                await ws.close(code=4008, reason="too far behind; reconnect with your cursor")
                return
    finally:
        for task in (receiver, ticker.task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _still_valid(pool: asyncpg.Pool, token: str) -> bool:
    try:
        return await staff_from_token(pool, token) is not None
    except TRANSIENT as exc:
        if not transient(exc):
            raise
        return True  # the database is down: keep the console, check again next interval


async def _drain_client(ws: WebSocket, queue: console_log.Subscription) -> None:
    """Read and ignore client frames, so that a closed socket wakes the loop at once."""
    while True:
        try:
            text = await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            with contextlib.suppress(asyncio.QueueFull):  # full: the loop is awake anyway
                queue.put_nowait(Wake.GONE)
            return
        del text  # actions go through REST; a client ping only keeps proxies awake
