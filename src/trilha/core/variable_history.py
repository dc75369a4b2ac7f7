"""Each variable's history: which step (or operator) gave it each value it held.

Nothing records "step 7 set ``contact.name``" as such; it does not need to: every
checkpoint keeps the whole state after its step, so comparing a checkpoint's
variables with the previous one's says what the step changed. An operator's edit
(``operator.set_variables`` in the trail, with the paths and never the values)
writes no checkpoint; what it changed shows in the next comparison, and is
credited to the operator when the edit touched that variable in between. The
variables as they are now close the history (an edit after the last step).

Histories are kept per top-level name (``contact`` for ``contact.name``): that is
what a step assigns and what a screen can list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["start", "step", "operator"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The variables after step ``seq`` (its checkpoint), at ``at``."""

    seq: int
    node_id: str | None
    at: float
    variables: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Edit:
    """An operator's change of variables: who, when, which dotted paths."""

    at: float
    actor: str | None
    paths: Sequence[str]


@dataclass(frozen=True, slots=True)
class Change:
    value: Any
    at: float
    by: Source
    seq: int | None = None
    node_id: str | None = None
    actor: str | None = None
    #: the variable was removed (``value`` is ``None``)
    removed: bool = False

    def wire(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "at": self.at,
            "by": self.by,
            "seq": self.seq,
            "nodeId": self.node_id,
            "actor": self.actor,
            "removed": self.removed,
        }


def variable_history(
    start: Mapping[str, Any],
    started_at: float,
    snapshots: Sequence[Snapshot],
    edits: Sequence[Edit],
    current: Mapping[str, Any],
    now: float,
) -> dict[str, list[Change]]:
    """Every top-level variable's values, oldest first."""
    history: dict[str, list[Change]] = {
        name: [Change(value, started_at, "start")] for name, value in start.items()
    }
    pending = sorted(edits, key=lambda e: e.at)
    previous: Mapping[str, Any] = start
    index = 0
    for snap in sorted(snapshots, key=lambda s: s.seq):
        touched: dict[str, Edit] = {}
        while index < len(pending) and pending[index].at <= snap.at:
            for path in pending[index].paths:
                touched[path.split(".", 1)[0]] = pending[index]
            index += 1
        _diff(history, previous, snap.variables, touched, snap)
        previous = snap.variables
    touched = {}
    for edit in pending[index:]:
        for path in edit.paths:
            touched[path.split(".", 1)[0]] = edit
    _diff(history, previous, current, touched, None, now)
    return history


def _diff(
    history: dict[str, list[Change]],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    touched: Mapping[str, Edit],
    snap: Snapshot | None,
    now: float = 0.0,
) -> None:
    for name in [*after, *(n for n in before if n not in after)]:
        present = name in after
        if present and name in before and before[name] == after[name]:
            continue
        value = after.get(name)
        edit = touched.get(name)
        if edit is not None:
            change = Change(value, edit.at, "operator", actor=edit.actor, removed=not present)
        elif snap is not None:
            change = Change(value, snap.at, "step", snap.seq, snap.node_id, removed=not present)
        else:  # changed after the last checkpoint by no recorded edit: say when it was seen
            change = Change(value, now, "step", removed=not present)
        history.setdefault(name, []).append(change)
