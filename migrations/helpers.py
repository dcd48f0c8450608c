"""What autogenerate compares: our tables, not PostGIS's own."""

from __future__ import annotations

from typing import Any

from geoalchemy2 import alembic_helpers

POSTGIS_TABLES = frozenset({"spatial_ref_sys", "layer", "topology"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "table" and name in POSTGIS_TABLES:
        return False
    result: bool = alembic_helpers.include_object(obj, name, type_, reflected, compare_to)
    return result
