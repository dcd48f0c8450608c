"""A small synthetic demo city: four districts, safe places, police boxes, people, a button.

Synthetic on purpose (the real Seoul open data is imported with ``ansim places import``); placed
over central Seoul so the map looks familiar. Running it again updates rather than duplicates and
issues fresh tokens."""

from __future__ import annotations

import random
from datetime import time
from typing import Any

from geoalchemy2 import WKTElement
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.models import Device, District, Member, SafePlace, Staff
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
LON0, LAT0, LON1, LAT1 = 126.90, 37.48, 127.10, 37.60
DISTRICTS = [  # code, name, (lon0, lat0, lon1, lat1)
    ("DEMO-NW", "Demo North-West", (LON0, 37.54, 127.00, LAT1)),
    ("DEMO-NE", "Demo North-East", (127.00, 37.54, LON1, LAT1)),
    ("DEMO-SW", "Demo South-West", (LON0, LAT0, 127.00, 37.54)),
    ("DEMO-SE", "Demo South-East", (127.00, LAT0, LON1, 37.54)),
]
BRANDS = ["Demo Mart", "Night Owl Store", "Corner 24", "Moonlight Mart"]


async def _upsert_districts(session: AsyncSession) -> None:
    for code, name, (x0, y0, x1, y1) in DISTRICTS:
        ring = f"{x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}"
        boundary = WKTElement(f"MULTIPOLYGON((({ring})))", srid=4326)
        await session.execute(
            insert(District)
            .values(code=code, name=name, name_en=name, boundary=boundary)
            .on_conflict_do_update(
                index_elements=[District.code], set_={"name": name, "boundary": boundary}
            )
        )


def _places() -> list[dict[str, Any]]:
    rng = random.Random(20141001)  # Seoul's Safety Houses started in 2014
    places: list[dict[str, Any]] = []
    for i in range(48):
        lon, lat = rng.uniform(LON0, LON1), rng.uniform(LAT0, LAT1)
        night_shop = i % 6 == 5
        places.append(
            {
                "kind": "convenience_store",
                "name": f"{BRANDS[i % len(BRANDS)]} #{i + 1}",
                "address": f"{i + 1} Demo-ro, Seoul",
                "phone": f"02-555-{1000 + i}",
                "open_24h": not night_shop,
                "opens_at": time(7) if night_shop else None,
                "closes_at": time(23) if night_shop else None,
                "is_safety_house": i % 2 == 0,
                "external_ref": f"store-{i + 1}",
                "point": (lon, lat),
            }
        )
    for i in range(10):
        lon, lat = rng.uniform(LON0, LON1), rng.uniform(LAT0, LAT1)
        places.append(
            {
                "kind": "police_station" if i < 2 else "police_box",
                "name": f"Demo {'Police Station' if i < 2 else 'Police Box'} {i + 1}",
                "address": f"{100 + i} Police-ro, Seoul",
                "phone": "112",
                "open_24h": True,
                "opens_at": None,
                "closes_at": None,
                "is_safety_house": False,
                "external_ref": f"police-{i + 1}",
                "point": (lon, lat),
            }
        )
    return places


async def _upsert_places(session: AsyncSession) -> None:
    for place in _places():
        lon, lat = place.pop("point")
        values = {
            **place,
            "source": SOURCE,
            "active": True,
            "geog": WKTElement(f"POINT({lon} {lat})", srid=4326),
        }
        await session.execute(
            insert(SafePlace)
            .values(**values)
            .on_conflict_do_update(
                constraint="uq_safe_place_source_ref",
                set_={k: v for k, v in values.items() if k not in ("source", "external_ref")},
            )
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
    session: AsyncSession, role: str, username: str, name: str, **kwargs: Any
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
        select(SafePlace).where(SafePlace.source == SOURCE, SafePlace.external_ref == "store-1")
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
    await _upsert_districts(session)
    await _upsert_places(session)
    await session.flush()
    dispatchers = [
        await _staff(
            session,
            "dispatcher",
            f"dispatcher-{code.split('-')[1].lower()}",
            f"Dispatcher {name}",
            district_codes=[code],
        )
        for code, name, _ in DISTRICTS
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
    }
