"""Pairing joins and leaves into stays, clipping them, and counting overlaps once."""

import pytest

from plugnmeet_webhooks.ledger.stays import JOIN, LEAVE, pair, seconds_by_person, stays_of


@pytest.mark.parametrize(
    ("marks", "stays"),
    [
        ([(10, JOIN), (20, LEAVE)], [(10, 20)]),
        ([(20, LEAVE), (10, JOIN)], [(10, 20)]),  # any order in: the same stays out
        ([(10, JOIN), (20, LEAVE), (30, JOIN), (40, LEAVE)], [(10, 20), (30, 40)]),
        ([(10, JOIN), (15, JOIN), (20, LEAVE)], [(10, 20)]),  # a second join changes nothing
        ([(10, JOIN), (20, LEAVE), (25, LEAVE)], [(10, 20)]),  # a leave with none open: nothing
        ([(5, LEAVE), (10, JOIN)], [(10, None)]),  # open
        ([(10, JOIN), (10, LEAVE)], [(10, 10)]),  # joined and left at once: empty
        ([(0, JOIN), (10, JOIN), (10, LEAVE), (20, LEAVE)], [(0, 10), (10, 20)]),  # goes on
    ],
)
def test_marks_pair_into_stays(marks, stays):
    assert pair(marks) == stays


def test_stays_are_clipped_to_the_session_and_empty_ones_dropped():
    pairs = {"a": [(0, 50)], "b": [(150, 300)], "c": [(10, None)], "d": [(500, 600)]}
    found = stays_of(pairs, {}, 20, 200)
    assert [(s.participant_sid, s.joined_at, s.left_at, s.closed_by) for s in found] == [
        ("a", 20, 50, "participant_left"),
        ("c", 20, 200, "session_end"),  # no leave: the session's end closed it
        ("b", 150, 200, "participant_left"),  # a leave after the end: clipped, still a leave
    ]


def test_a_person_with_overlapping_devices_is_counted_once():
    pairs = {"phone": [(0, 60)], "laptop": [(30, 120)], "other": [(0, 10)]}
    identity = {"phone": "u-x", "laptop": "u-x", "other": "u-y"}
    assert seconds_by_person(pairs, identity, 0, 1000) == {"u-x": 120, "u-y": 10}
    # An open stay keeps the person's time open while the session is.
    assert seconds_by_person({"p": [(0, None)]}, {}, 0, None) == {"p": None}
