"""Shared by the fault campaign: members made fast, an SOS client that behaves like the phone
app (same client_alert_id on every retry), the figures written to artifacts/faults/."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.security.passwords import hash_secret
from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "faults"
IN_A = {"lat": 37.52, "lon": 126.92, "accuracy_m": 8}
_PIN_HASH: list[str] = []


def pin_hash() -> str:
    if not _PIN_HASH:
        _PIN_HASH.append(hash_secret("1234"))
    return _PIN_HASH[0]


async def make_members(conn: asyncpg.Pool | asyncpg.Connection, n: int) -> list[str]:
    """``n`` members with app tokens (one SOS each: a member's repeats fold into one alert)."""
    rows = []
    tokens = []
    for _ in range(n):
        member_id = uuid.uuid4()
        token = new_token(MEMBER_PREFIX)
        rows.append((member_id, "+8210" + str(member_id.int)[:9], token))
        tokens.append(token)
    await conn.executemany(
        "INSERT INTO member (id, phone, name, pin_hash, wrong_pin_count)"
        " VALUES ($1, $2, 'F', $3, 0)",
        [(m, p, pin_hash()) for m, p, _ in rows],
    )
    await conn.executemany(
        "INSERT INTO member_token (id, member_id, token_hash) VALUES ($1, $2, $3)",
        [(uuid.uuid4(), m, hash_token(t)) for m, _, t in rows],
    )
    return tokens


async def make_city_dispatcher(conn: asyncpg.Pool | asyncpg.Connection) -> str:
    staff_id = uuid.uuid4()
    token = new_token(STAFF_PREFIX)
    await conn.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, active)"
        " VALUES ($1, $2, 'Supervisor', 'dispatcher', 'x', true, true)",
        staff_id,
        f"faults-{staff_id.hex[:8]}",
    )
    await conn.execute(
        "INSERT INTO staff_token (id, staff_id, token_hash, expires_at)"
        " VALUES ($1, $2, $3, now() + interval '1 hour')",
        uuid.uuid4(),
        staff_id,
        hash_token(token),
    )
    return token


@dataclass
class Phone:
    """One SOS as the app sends it: retried with the same client_alert_id until a 2xx."""

    token: str
    client_alert_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    incident_id: str | None = None
    attempts: list[int | str] = field(default_factory=list)

    async def send(self, http: httpx.AsyncClient, base: str) -> httpx.Response | None:
        try:
            r = await http.post(
                f"{base}/v1/alerts",
                json={
                    "client_alert_id": self.client_alert_id,
                    "trigger": "button",
                    "location": IN_A,
                },
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as exc:
            self.attempts.append(type(exc).__name__)
            return None
        self.attempts.append(r.status_code)
        if r.status_code in (200, 201):
            body = r.json()
            if self.incident_id is not None:
                assert body["incident_id"] == self.incident_id, "a retry made a second incident"
            self.incident_id = body["incident_id"]
        return r


def write_artifact(name: str, figures: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {
        "test": name,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **figures,
    }
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


def reported_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["incident"]["id"]
        for m in messages
        if m.get("type") == "incident" and m.get("event") == "reported"
    ]
