import pytest

from app.incidents.lifecycle import CLOSED, OPEN, TRANSITIONS, can_transition


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        ("new", "acknowledged", True),
        ("new", "responding", False),
        ("new", "resolved", False),
        ("acknowledged", "responding", True),
        ("responding", "on_scene", True),
        ("on_scene", "resolved", True),
        ("on_scene", "responding", False),
        ("resolved", "acknowledged", False),
        ("false_alarm", "new", False),
        ("cancelled", "acknowledged", False),
    ],
)
def test_the_state_machine_allows_only_forward_moves(current, target, ok):
    assert can_transition(current, target) is ok


def test_every_open_state_can_be_closed_and_closed_states_are_final():
    for state in OPEN:
        assert {"false_alarm", "cancelled"} <= TRANSITIONS[state]
    for state in CLOSED:
        assert TRANSITIONS[state] == frozenset()
