"""The demo city: Seoul's 25 real districts, synthetic safe places inside them, people, a button.

The districts are the boundaries shipped in app/geo/data/seoul/ (Apache-2.0); everything else is
synthetic and named so ("(synthetic)" in every place's name and address): the real Seoul open
data of unclear licence is imported with ``ansim places import``, never shipped. Running it again
updates rather than duplicates and issues fresh tokens."""

from __future__ import annotations

from datetime import time
from typing import Any, cast

import asyncpg
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.service import import_dongs
from app.config import get_settings
from app.geo.importers import DistrictRecord, PlaceRecord, write_districts, write_places
from app.geo.shipped import seoul_districts
from app.models import Device, District, Member, SafePlace, Staff
from app.safe_return import scouts
from app.safe_return.service import Point
from app.security import totp
from app.security.accounts import (
    create_member,
    create_staff,
    enrol_totp,
    issue_member_token,
    issue_staff_token,
)
from app.security.tokens import new_device_secret

SOURCE = "demo"
PASSWORD = "demo-password"
BRANDS = ["Demo Mart", "Night Owl Store", "Corner 24", "Moonlight Mart"]
#: Per district: this many stores (the odd ones Safety Houses, the last one closed at night),
#: a police box and a police station.
STORES_PER_DISTRICT = 4
#: The store the demo panic button sits in: the first one in 강남구.
BUTTON_PLACE = "11680-store-1"
#: What `ansim demo` seeded before it had the real districts: four rectangles and their
#: dispatchers, retired so that an old development database shows only the real city.
LEGACY_DISTRICTS = ("DEMO-NW", "DEMO-NE", "DEMO-SW", "DEMO-SE")
LEGACY_DISPATCHERS = ("dispatcher-nw", "dispatcher-ne", "dispatcher-sw", "dispatcher-se")

#: Points spread inside each district's polygon, the same ones on every run (seeded by the
#: district code). ST_GeneratePoints draws them inside the polygon, never on its border.
_POINTS_IN_DISTRICTS = """
SELECT d.code, (p).path[1] AS n, ST_Y((p).geom) AS lat, ST_X((p).geom) AS lon
FROM district d, LATERAL ST_Dump(ST_GeneratePoints(d.boundary, $2, d.code::int)) AS p
WHERE d.code = ANY($1::text[])
ORDER BY d.code, n
"""


def username_for(district: DistrictRecord) -> str:
    """``dispatcher-gangnam`` for 강남구 (Gangnam-gu)."""
    return f"dispatcher-{(district.name_en or district.code).removesuffix('-gu').lower()}"


async def _driver(session: AsyncSession) -> asyncpg.Connection:
    """The session's own asyncpg connection, for the importers' writers: one unit of work."""
    # SQLAlchemy begins on asyncpg lazily: begin now, so the writers' transactions nest in it
    # (asyncpg makes them savepoints) and commit or roll back with the session.
    await session.execute(select(1))
    raw = await (await session.connection()).get_raw_connection()
    driver = cast(asyncpg.Connection, raw.driver_connection)
    assert driver.is_in_transaction()
    return driver


async def _upsert_districts(conn: asyncpg.Connection, districts: list[DistrictRecord]) -> None:
    *_, skipped, _repaired = await write_districts(conn, districts)
    if skipped:  # the shipped file is checked by tests/geo/test_shipped.py; never half a city
        raise RuntimeError(f"shipped districts refused: {[p.as_json() for p in skipped]}")


def _places(districts: list[DistrictRecord], points: list[asyncpg.Record]) -> list[PlaceRecord]:
    by_code = {d.code: d for d in districts}
    places: list[PlaceRecord] = []
    for k, p in enumerate(points):
        d, n = by_code[p["code"]], p["n"]
        where = f"{d.name} {d.name_en}, Seoul (synthetic)"
        if n <= STORES_PER_DISTRICT:
            night_shop = n == STORES_PER_DISTRICT  # closed at night: open_now matters
            brand = BRANDS[(n - 1) % len(BRANDS)]
            ref, kind, phone = f"{d.code}-store-{n}", "convenience_store", f"02-0000-{k:04d}"
            name, address = f"{brand} {d.name_en} #{n} (synthetic)", f"{n} Demo-ro, {where}"
            hours = (False, time(7), time(23)) if night_shop else (True, None, None)
            safety_house = n % 2 == 1
        else:
            station = n == STORES_PER_DISTRICT + 2
            label = "Police Station" if station else "Police Box"
            ref = f"{d.code}-{'police-station' if station else 'police-box'}"
            kind = "police_station" if station else "police_box"
            name, address, phone = f"{d.name_en} {label} (synthetic)", f"Police-ro, {where}", "112"
            hours, safety_house = (True, None, None), False
        places.append(
            PlaceRecord(
                row=k + 1,
                ref=ref,
                kind=kind,
                name=name,
                address=address,
                phone=phone,
                open_24h=hours[0],
                opens_at=hours[1],
                closes_at=hours[2],
                is_safety_house=safety_house,
                lat=p["lat"],
                lon=p["lon"],
            )
        )
    return places


async def _upsert_places(conn: asyncpg.Connection, districts: list[DistrictRecord]) -> None:
    points = await conn.fetch(
        _POINTS_IN_DISTRICTS, [d.code for d in districts], STORES_PER_DISTRICT + 2
    )
    # Places of an earlier demo that this one no longer seeds are switched off, not left behind.
    await write_places(conn, _places(districts, points), source=SOURCE, deactivate_missing=True)


async def _retire_legacy(session: AsyncSession) -> None:
    await session.execute(delete(District).where(District.code.in_(LEGACY_DISTRICTS)))
    await session.execute(
        update(Staff).where(Staff.username.in_(LEGACY_DISPATCHERS)).values(active=False)
    )


async def _member(session: AsyncSession) -> dict[str, Any]:
    phone = "+821000000001"
    member = await session.scalar(select(Member).where(Member.phone == phone))
    if member is None:
        member = await create_member(
            session, phone=phone, name="Jiyoung (demo)", pin="1234", duress_pin="9999"
        )
    token = await issue_member_token(session, member_id=member.id, label="demo")
    return {
        "member_id": str(member.id),
        "phone": phone,
        "token": token,
        "pin": "1234",
        "duress_pin": "9999",
    }


async def _staff(
    session: AsyncSession,
    role: str,
    username: str,
    name: str,
    shown: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    staff = await session.scalar(select(Staff).where(Staff.username == username))
    if staff is None:
        staff = await create_staff(
            session, role=role, username=username, name=name, password=PASSWORD, **kwargs
        )
    elif kwargs.get("on_call") and not staff.on_call:  # a demo seeded before paging existed
        staff.on_call, staff.phone = True, kwargs.get("phone")
    token, _ = await issue_staff_token(
        session, staff_id=staff.id, ttl_s=get_settings().staff_token_ttl_s
    )
    return {
        "username": username,
        "password": PASSWORD,
        "token": token,
        "staff_id": str(staff.id),
        **({"district": kwargs["district_codes"][0]} if kwargs.get("district_codes") else {}),
        **(shown or {}),
    }


async def _operator(session: AsyncSession) -> dict[str, Any]:
    """The demo operator signs in with a second factor, as every operator must in production;
    its secret is printed so that the demo stays usable without an authenticator app."""
    creds = await _staff(session, "operator", "operator", "City Operator")
    staff = await session.scalar(select(Staff).where(Staff.username == "operator"))
    assert staff is not None
    secret_key = get_settings().secret_key
    secret = None
    if staff.totp_secret is not None:
        try:
            secret = totp.decrypt_secret(
                staff.totp_secret, secret_key=secret_key, staff_id=staff.id
            )
        except totp.UndecryptableSecret:  # seeded under another ANSIM_SECRET_KEY
            secret = None
    recovery_codes = None
    if secret is None:
        enrolment = await enrol_totp(session, staff=staff, secret_key=secret_key)
        secret, recovery_codes = enrolment.secret, enrolment.recovery_codes
    return {
        **creds,
        "totp_secret": secret,
        "otpauth_uri": totp.otpauth_uri(secret, staff.username),
        "totp_hint": (
            "sign in with the password and the current code: scan otpauth_uri into an "
            "authenticator app, or run: .venv/bin/python -c "
            f"\"import pyotp; print(pyotp.TOTP('{secret}').now())\""
        ),
        **({"recovery_codes": recovery_codes} if recovery_codes else {}),
    }


async def _device(session: AsyncSession) -> dict[str, Any]:
    place = await session.scalar(
        select(SafePlace).where(SafePlace.source == SOURCE, SafePlace.external_ref == BUTTON_PLACE)
    )
    assert place is not None
    device = await session.scalar(select(Device).where(Device.safe_place_id == place.id))
    if device is None:
        device = Device(
            safe_place_id=place.id, label="demo counter button", secret=new_device_secret()
        )
        session.add(device)
        await session.flush()
    return {"device_id": str(device.id), "secret": device.secret, "place": place.name}


async def seed_demo(session: AsyncSession) -> dict[str, Any]:
    """Seed (or refresh) the demo city; returns the sign-in details to print."""
    districts = seoul_districts()
    await _retire_legacy(session)
    conn = await _driver(session)
    await _upsert_districts(conn, districts)
    await _upsert_places(conn, districts)
    # The dongs the analytics count by (the same shipped boundaries).
    await import_dongs(conn)
    dispatchers = [
        await _staff(
            session,
            "dispatcher",
            username_for(d),
            f"Dispatcher {d.name_en} ({d.name})",
            {"district_name": d.name, "district_name_en": d.name_en},
            district_codes=[d.code],
        )
        for d in districts
    ]
    return {
        "api": "http://127.0.0.1:8000",
        "member": await _member(session),
        "dispatchers": dispatchers,
        "supervisor": await _staff(
            session,
            "dispatcher",
            "supervisor",
            "City Supervisor",
            city_wide=True,
            # On call: `make run` pages someone (the log gateway logs the SMS).
            phone="+821099990000",
            on_call=True,
        ),
        "volunteers": [
            await _staff(
                session,
                "volunteer",
                f"volunteer-{i}",
                f"Volunteer {i}",
                badge_number=f"SRS-{2000 + i}",
                phone=f"+8210555{i:05d}",
            )
            for i in (1, 2)
        ],
        "operator": await _operator(session),
        "device": await _device(session),
        # A Safe Return Scouts team of the two volunteers, in 강남구 (docs/safe-return.md).
        "scouts": await _scouts(session, conn),
    }


async def _scouts(session: AsyncSession, conn: asyncpg.Connection) -> dict[str, Any]:
    await session.flush()
    return await scouts.seed_demo(
        conn,
        get_settings(),
        district_code="11680",
        usernames=("volunteer-1", "volunteer-2"),
        base=Point(37.5172, 127.0473),  # 강남구청 (the district office)
    )
