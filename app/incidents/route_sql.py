"""SQL that routes a new report, shared by the SOS insert (a phone's SOS routed at intake,
``store.insert_incident(route=True)``) and the dispatchers (``app.dispatch.routing``)."""

from __future__ import annotations

#: A phone SOS and a button press close in space and time are one emergency.
LINK_OTHER = {"app": "button", "button": "app"}


def routed_event_sql(
    rows: str,
    actor: str,
    where: str = "true",
    *,
    district_code: str | None = None,
    new_incident: bool = False,
) -> str:
    """Insert the ``routed`` event of the incident rows in ``rows`` (a FROM item aliased
    ``r``) where ``where`` holds, unless the incident has one already: a phone's SOS routed at
    intake whose entry a dispatcher routes again (published again by a replay or by the
    reconciler) gets one. ``actor`` is an SQL expression.

    The SOS insert passes what it already knows: ``district_code``, an SQL expression for the
    code of the incident's district (otherwise it is joined), and ``new_incident`` (the rows
    were inserted by the same statement, so they have no event to look for). Both spare every
    SOS a lookup (0.05 ms of the insert's 0.6, measured)."""
    code = district_code or "d.code"
    join = "" if district_code else " LEFT JOIN district d ON d.id = r.district_id"
    once = (
        ""
        if new_incident
        else """ AND NOT EXISTS (
  SELECT 1 FROM incident_event e WHERE e.incident_id = r.id AND e.kind = 'routed')"""
    )
    return f"""
INSERT INTO incident_event (incident_id, kind, actor, data)
SELECT r.id, 'routed', {actor},
       jsonb_build_object('channel', coalesce('district:' || {code}, 'city_wide'))
FROM {rows}{join}
WHERE {where}{once}
"""


def link_lateral_sql(source: str, window: str, radius: str) -> str:
    """The open report of the other source close to incident ``i`` in space and time, as a
    LATERAL FROM item ``l`` (``link_id``, ``link_emergency_id``); ``window`` (seconds) and
    ``radius`` (metres) are SQL expressions, parameters in practice.

    The other source is a literal and the window a ``received_at`` range, so that a phone's
    lookup is a range of ``ix_incident_open_presses`` (migration 0007) and its cost follows the
    rate of button presses, never the number of open incidents. (Written with the source as a
    parameter and ``abs(received_at - ...) <= window``, no index could serve it, and the plan
    PostgreSQL cached while the table was small read every open incident: 3.6 ms per SOS with
    8,000 open.)"""
    other = LINK_OTHER.get(source)
    if other is None:
        # (The parameters are still named, so every source's statement takes the same ones.)
        return (
            "LATERAL (SELECT NULL::uuid AS link_id, NULL::uuid AS link_emergency_id,"
            f" {window}::float8 AS window_s, {radius}::float8 AS radius_m) l"
        )
    return f"""
LATERAL (
  SELECT o.id AS link_id, coalesce(o.emergency_id, o.id) AS link_emergency_id
  FROM incident o
  WHERE o.source = '{other}' AND o.closed_at IS NULL
    AND o.received_at BETWEEN i.received_at - make_interval(secs => {window}::float8)
                          AND i.received_at + make_interval(secs => {window}::float8)
    AND o.id <> i.id AND i.location IS NOT NULL AND o.location IS NOT NULL
    AND ST_DWithin(o.location, i.location, {radius}::float8)
  ORDER BY o.received_at LIMIT 1
) l
"""
