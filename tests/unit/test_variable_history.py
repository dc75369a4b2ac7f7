"""Each variable's history from the checkpoints, the operator's edits and the variables
now: who (which step, which operator) gave each top-level variable each value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trilha.core.variable_history import Change, Edit, Snapshot, variable_history

T0 = 1_800_000_000.0
NOW = T0 + 1_000


def history(
    start: dict[str, Any],
    snapshots: Sequence[Snapshot] = (),
    edits: Sequence[Edit] = (),
    current: dict[str, Any] | None = None,
) -> dict[str, list[Change]]:
    if current is None:
        current = dict(snapshots[-1].variables) if snapshots else dict(start)
    return variable_history(start, T0, snapshots, edits, current, NOW)


def test_start_values_only() -> None:
    assert history({"name": "Ana", "n": 1}) == {
        "name": [Change("Ana", T0, "start")],
        "n": [Change(1, T0, "start")],
    }


def test_nothing_at_all() -> None:
    assert history({}) == {}


def test_a_step_changing_a_value_and_one_leaving_it() -> None:
    snaps = [
        Snapshot(1, "welcome", T0 + 1, {"name": "Ana", "n": 1}),
        Snapshot(2, "ask_name", T0 + 5, {"name": "Bia", "n": 1}),
    ]
    assert history({"name": "Ana", "n": 1}, snaps) == {
        "name": [Change("Ana", T0, "start"), Change("Bia", T0 + 5, "step", 2, "ask_name")],
        "n": [Change(1, T0, "start")],  # unchanged all along: no new entry
    }


def test_a_variable_a_step_creates_and_one_set_to_an_equal_value() -> None:
    snaps = [
        Snapshot(1, "ask", T0 + 2, {"a": {"x": 1}, "email": "a@b.c"}),
        Snapshot(2, "again", T0 + 3, {"a": {"x": 1}, "email": "a@b.c"}),  # same values again
        Snapshot(3, "change", T0 + 4, {"a": {"x": 2}, "email": "a@b.c"}),
    ]
    assert history({"a": {"x": 1}}, snaps) == {
        "a": [Change({"x": 1}, T0, "start"), Change({"x": 2}, T0 + 4, "step", 3, "change")],
        "email": [Change("a@b.c", T0 + 2, "step", 1, "ask")],
    }


def test_removal_and_coming_back() -> None:
    snaps = [
        Snapshot(1, "drop", T0 + 1, {"keep": 1}),
        Snapshot(2, "add", T0 + 2, {"keep": 1, "tmp": "again"}),
    ]
    found = history({"keep": 1, "tmp": "x"}, snaps)
    assert found["tmp"] == [
        Change("x", T0, "start"),
        Change(None, T0 + 1, "step", 1, "drop", removed=True),
        Change("again", T0 + 2, "step", 2, "add"),
    ]
    assert found["keep"] == [Change(1, T0, "start")]
    assert found["tmp"][1].wire() == {
        "value": None,
        "at": T0 + 1,
        "by": "step",
        "seq": 1,
        "nodeId": "drop",
        "actor": None,
        "removed": True,
    }


def test_snapshots_are_read_in_step_order() -> None:
    snaps = [
        Snapshot(2, "second", T0 + 2, {"v": 2}),
        Snapshot(1, "first", T0 + 1, {"v": 1}),
    ]
    assert history({}, snaps, current={"v": 2}) == {
        "v": [Change(1, T0 + 1, "step", 1, "first"), Change(2, T0 + 2, "step", 2, "second")]
    }


def test_an_operator_edit_between_two_checkpoints_is_credited_to_the_operator() -> None:
    snaps = [
        Snapshot(1, "ask", T0 + 1, {"tier": "basic", "name": "Ana"}),
        Snapshot(2, "bye", T0 + 10, {"tier": "gold", "name": "Ana Lima", "done": True}),
    ]
    edits = [Edit(T0 + 5, "key:abc", ["tier"])]
    found = history({"tier": "basic"}, snaps, edits)
    assert found == {
        "tier": [Change("basic", T0, "start"), Change("gold", T0 + 5, "operator", actor="key:abc")],
        "name": [
            Change("Ana", T0 + 1, "step", 1, "ask"),
            Change("Ana Lima", T0 + 10, "step", 2, "bye"),
        ],
        "done": [Change(True, T0 + 10, "step", 2, "bye")],
    }
    assert found["tier"][1].wire() == {
        "value": "gold",
        "at": T0 + 5,
        "by": "operator",
        "seq": None,
        "nodeId": None,
        "actor": "key:abc",
        "removed": False,
    }


def test_an_edit_before_the_first_step_and_an_unset() -> None:
    snaps = [Snapshot(1, "hello", T0 + 3, {"note": "hi"})]
    edits = [Edit(T0 + 1, "cli:ana", ["cpf", "note"])]
    found = history({"cpf": "123"}, snaps, edits)
    assert found == {
        "cpf": [
            Change("123", T0, "start"),
            Change(None, T0 + 1, "operator", actor="cli:ana", removed=True),
        ],
        "note": [Change("hi", T0 + 1, "operator", actor="cli:ana")],
    }


def test_an_edit_after_the_last_checkpoint_is_read_from_the_variables_now() -> None:
    snaps = [Snapshot(1, "ask", T0 + 1, {"name": "Ana", "tier": "basic"})]
    edits = [Edit(T0 + 50, "key:k1", ["tier"])]
    found = history({}, snaps, edits, current={"name": "Ana", "tier": "vip"})
    assert found == {
        "name": [Change("Ana", T0 + 1, "step", 1, "ask")],
        "tier": [
            Change("basic", T0 + 1, "step", 1, "ask"),
            Change("vip", T0 + 50, "operator", actor="key:k1"),
        ],
    }


def test_the_latest_edit_of_a_name_wins_before_a_checkpoint() -> None:
    snaps = [Snapshot(1, "a", T0 + 1, {"x": 1}), Snapshot(2, "b", T0 + 9, {"x": 3})]
    edits = [Edit(T0 + 5, "key:second", ["x"]), Edit(T0 + 3, "key:first", ["x"])]
    assert history({}, snaps, edits)["x"] == [
        Change(1, T0 + 1, "step", 1, "a"),
        Change(3, T0 + 5, "operator", actor="key:second"),
    ]


def test_an_edit_that_changed_nothing_adds_nothing() -> None:
    snaps = [Snapshot(1, "a", T0 + 1, {"x": 1}), Snapshot(2, "b", T0 + 9, {"x": 1})]
    edits = [Edit(T0 + 5, "key:k", ["x"])]
    assert history({}, snaps, edits, current={"x": 1}) == {"x": [Change(1, T0 + 1, "step", 1, "a")]}


def test_nested_paths_are_credited_to_the_top_level_name() -> None:
    snaps = [
        Snapshot(1, "ask", T0 + 1, {"contact": {"name": "Ana"}, "crm": {"tier": "basic"}}),
        Snapshot(2, "next", T0 + 9, {"contact": {"name": "Ana Lima"}, "crm": {"tier": "basic"}}),
    ]
    edits = [Edit(T0 + 4, "key:k", ["contact.name"]), Edit(T0 + 12, "key:k", ["crm.tier.level"])]
    current = {"contact": {"name": "Ana Lima"}, "crm": {"tier": {"level": 2}}}
    found = history({}, snaps, edits, current)
    assert set(found) == {"contact", "crm"}
    assert found["contact"] == [
        Change({"name": "Ana"}, T0 + 1, "step", 1, "ask"),
        Change({"name": "Ana Lima"}, T0 + 4, "operator", actor="key:k"),
    ]
    assert found["crm"] == [
        Change({"tier": "basic"}, T0 + 1, "step", 1, "ask"),
        Change({"tier": {"level": 2}}, T0 + 12, "operator", actor="key:k"),
    ]


def test_a_change_after_the_last_checkpoint_with_no_edit_is_seen_now() -> None:
    snaps = [Snapshot(1, "a", T0 + 1, {"x": 1})]
    assert history({}, snaps, current={"x": 2})["x"] == [
        Change(1, T0 + 1, "step", 1, "a"),
        Change(2, NOW, "step"),
    ]


def test_an_edit_at_the_checkpoints_time_counts_before_it() -> None:
    snaps = [Snapshot(1, "a", T0 + 1, {"x": 1}), Snapshot(2, "b", T0 + 5, {"x": 2})]
    found = history({}, snaps, [Edit(T0 + 5, None, ["x"])])
    assert found["x"][-1] == Change(2, T0 + 5, "operator", actor=None)
