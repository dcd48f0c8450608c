"""Accounts made in bulk (a bulk enrolment, the benchmark's thousands of test members) are the
same accounts as those made one by one: their tokens sign in, their PINs verify, and a batch
with a phone already registered leaves nothing behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.errors import BadRequest
from app.models import Member
from app.security.accounts import NewStaff, create_members, create_staff_many
from app.security.passwords import verify_secret


async def test_bulk_members_sign_in_with_their_own_token_and_share_the_pin(sessionmaker, client):
    async with sessionmaker() as session, session.begin():
        tokens = await create_members(
            session,
            [("+821099990001", "Bulk A"), ("+821099990002", "Bulk B")],
            pin="4321",
            duress_pin="8765",
            token_label="bulk",
        )
    assert len(set(tokens)) == 2
    for token, name in zip(tokens, ("Bulk A", "Bulk B"), strict=True):
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["name"] == name
    async with sessionmaker() as session:
        member = await session.scalar(select(Member).where(Member.phone == "+821099990002"))
    assert member is not None
    assert verify_secret(member.pin_hash, "4321") and not verify_secret(member.pin_hash, "8765")
    assert verify_secret(member.duress_pin_hash, "8765")


async def test_a_batch_with_a_registered_phone_leaves_nothing_and_pins_must_differ(sessionmaker):
    async with sessionmaker() as session, session.begin():
        await create_members(
            session, [("+821099990003", "Taken")], pin="1111", duress_pin=None, token_label="x"
        )
    with pytest.raises(IntegrityError):
        async with sessionmaker() as session, session.begin():
            await create_members(
                session,
                [("+821099990004", "New"), ("+821099990003", "Again")],
                pin="1111",
                duress_pin=None,
                token_label="x",
            )
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(Member.phone.in_(["+821099990003", "+821099990004"]))
        )
    assert count == 1
    with pytest.raises(BadRequest):
        async with sessionmaker() as session, session.begin():
            await create_members(session, [("+821099990005", "S")], pin="1", duress_pin="1",
                                 token_label="x")  # fmt: skip


async def test_bulk_staff_tokens_open_a_console(sessionmaker, client):
    async with sessionmaker() as session, session.begin():
        tokens = await create_staff_many(
            session,
            [NewStaff("bulk-d1", "Bulk dispatcher", city_wide=True)],
            role="dispatcher",
            password="bulk-password",
            ttl_s=60,
        )
    r = await client.get("/v1/console/incidents", headers={"Authorization": f"Bearer {tokens[0]}"})
    assert r.status_code == 200, r.text
