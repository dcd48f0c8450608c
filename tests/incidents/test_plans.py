"""The SOS insert reads a bounded number of rows however many incidents are open."""

from __future__ import annotations

import pytest

from app.incidents.store import NewIncident, insert_incident
from app.security.tokens import hash_token
from tests.plans import Measured, PlanProbe, rows_read


async def test_the_fold_check_reads_her_own_alerts_not_everyone_s(pool, settings, make_member):
    """ "Does she already have an open alert?" is a short range of her own incidents: 2,000 open
    alerts of others (phones and buttons) received in the same seconds are not read, under the
    plan a long-lived connection keeps. (With a time index that does not start with the member,
    a plan cached while the table was small read all of them: 7 ms per SOS.)"""
    member = await make_member()
    await pool.execute(
        """INSERT INTO incident (id, source, trigger, received_at)
           SELECT gen_random_uuid(), CASE WHEN n % 2 = 0 THEN 'app' ELSE 'button' END,
                  'button', now() - make_interval(secs => n % 20)
           FROM generate_series(1, 2000) n"""
    )
    probe = PlanProbe(pool)
    with pytest.raises(Measured):
        await insert_incident(
            probe,  # type: ignore[arg-type]
            NewIncident(
                source="app",
                trigger="button",
                actor=None,
                member_token_hash=hash_token(member.token),
                lat=37.52,
                lon=126.92,
            ),
            fold_window_s=settings.sos_fold_window_s,
            publish=True,
            ack_deadline_s=settings.ack_deadline_s,
        )
    assert rows_read(probe.plan, "incident") < 20
