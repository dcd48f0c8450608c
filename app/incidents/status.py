"""An incident's status: the values, which are open and which closed. The model's CHECK
constraint, the lifecycle, routing, the trail query and the console all read them here."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class IncidentStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESPONDING = "responding"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"
    CANCELLED = "cancelled"


S = IncidentStatus
OPEN: Final = frozenset({S.NEW, S.ACKNOWLEDGED, S.RESPONDING, S.ON_SCENE})
CLOSED: Final = frozenset({S.RESOLVED, S.FALSE_ALARM, S.CANCELLED})


def sql_list(statuses: frozenset[IncidentStatus] | type[IncidentStatus]) -> str:
    """``'new','acknowledged',...`` in declaration order, for a CHECK or an ``IN (...)``."""
    return ",".join(f"'{s.value}'" for s in IncidentStatus if s in statuses)
