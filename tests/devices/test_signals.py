"""The signal body parser: a panic always parses; everything else is strict."""

from __future__ import annotations

import json

import orjson
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from app.devices.signals import SignalType, parse_signal

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["panic", "silent_panic"]),
    extra=st.dictionaries(st.text(max_size=20), json_values, max_size=6),
)
def test_any_object_with_a_panic_type_parses_and_its_warnings_are_storable(kind, extra):
    extra.pop("type", None)
    raw = json.dumps({"type": kind, **extra}).encode()  # NaN and lone surrogates included
    parsed = parse_signal(raw)
    assert parsed.body.type == SignalType(kind)
    stored = orjson.dumps(parsed.warnings).decode()  # what goes into the event's JSONB
    assert "\\u0000" not in stored
    assert len(parsed.flags) <= len(parsed.warnings)


@pytest.mark.parametrize("kind", ["cancel", "duress", "test", "heartbeat", "low_battery", "tamper"])
def test_other_types_refuse_unknown_fields(kind):
    with pytest.raises(RequestValidationError):
        parse_signal(orjson.dumps({"type": kind, "extra": 1}))
    assert parse_signal(orjson.dumps({"type": kind, "battery_pct": 5})).body.battery_pct == 5
