"""A contact's silence: a question's reminders and the session's expiry, as pure data.

Both are times in the execution's own row, so nothing sleeps in memory and a restart
loses neither (DESIGN §8: a waiting execution costs a row):

* a question that waits keeps its schedule in its node state: when the wait began
  (``since``: the question, or the contact's last reply to it), how many reminders
  were said (``reminded``) and when the next one is due (``remindAt``). The state is
  committed with the reminder's outbox message in one step, so a reminder is neither
  lost nor said twice;
* a flow with ``settings.sessionTimeoutSeconds`` keeps, in the execution's ``meta``,
  when it last heard from the contact (``heardAt``) and when the session expires
  unless the contact writes again (``expiresAt``).

An execution's wake time is the earliest of its wait's due time, its next reminder
and its expiry (:func:`next_wake`): the engine, an operator's resume and the sweeper
agree on it through this one function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus

S = ExecutionStatus

#: node state: when the current wait for a reply began
SINCE: Final = "since"
#: node state: how many of the question's reminders were said in this wait
REMINDED: Final = "reminded"
#: node state: when the next reminder is due (absent when none is left)
REMIND_AT: Final = "remindAt"
#: meta: when the execution last heard from its contact (or was handed back by a person)
HEARD_AT: Final = "heardAt"
#: meta: when the session expires unless the contact writes first
EXPIRES_AT: Final = "expiresAt"

#: the waits a session expires from; ``paused`` is not one: a person holds it
EXPIRING: Final = frozenset({S.WAITING_INPUT, S.WAITING_DELAY, S.RECOVERING})


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def schedule(afters: Sequence[float], since: float, reminded: int) -> dict[str, Any]:
    """A question's schedule in its node state: the wait began at ``since`` and
    ``reminded`` reminders (of those due ``afters`` seconds after it) were said."""
    state: dict[str, Any] = {SINCE: since, REMINDED: reminded}
    if reminded < len(afters):
        state[REMIND_AT] = since + afters[reminded]
    return state


def due_reminders(afters: Sequence[float], node_state: Mapping[str, Any], now: float) -> list[int]:
    """The indexes of the reminders due at ``now`` and not said yet, oldest first."""
    since = _time(node_state.get(SINCE))
    if since is None:
        return []
    reminded = int(node_state.get(REMINDED, 0))
    return [j for j in range(reminded, len(afters)) if since + afters[j] <= now]


def reminder_due(ex: Execution, now: float) -> bool:
    """Whether a waiting question's next reminder is due."""
    remind_at = _time(ex.node_state.get(REMIND_AT))
    return ex.status is S.WAITING_INPUT and remind_at is not None and remind_at <= now


def session_meta(meta: Mapping[str, Any], heard: float, limit: float | None) -> dict[str, Any]:
    """``meta`` with the session's times for a contact last heard at ``heard`` (never
    moved back), or without them when the flow has no session timeout (``limit``)."""
    out = {k: v for k, v in meta.items() if k not in (HEARD_AT, EXPIRES_AT)}
    if limit is None:
        return out
    known = _time(meta.get(HEARD_AT))
    heard = heard if known is None else max(known, heard)
    return {**out, HEARD_AT: heard, EXPIRES_AT: heard + limit}


def heard(meta: Mapping[str, Any], at: float) -> dict[str, Any]:
    """``meta`` once the contact was heard at ``at`` (a reply being applied), when it
    keeps a session's times; its expiry moves with the wait the turn ends in."""
    known = _time(meta.get(HEARD_AT))
    if known is None or known >= at:
        return dict(meta)
    return {**meta, HEARD_AT: at}


def heard_at(ex: Execution) -> float:
    """When the execution last heard from its contact, as its row knows it: a message
    stored since (not applied yet, or to a delay) is the store's to tell."""
    known = _time(ex.meta.get(HEARD_AT))
    return ex.created_at if known is None else max(known, ex.created_at)


def expires_at(ex: Execution) -> float | None:
    return _time(ex.meta.get(EXPIRES_AT))


def next_wake(ex: Execution) -> float | None:
    """When a waiting execution should be claimed: the earliest of its wait's due time,
    its question's next reminder and its session's expiry (``None``: none of them)."""
    times = [ex.due_at]
    if ex.status is S.WAITING_INPUT:
        times.append(_time(ex.node_state.get(REMIND_AT)))
    if ex.status in EXPIRING:
        times.append(expires_at(ex))
    known = [t for t in times if t is not None]
    return min(known) if known else None


def wait_due(ex: Execution, now: float) -> bool:
    """Whether the wait itself has something to do at ``now`` (its due time came, or a
    reminder is due), beside the session's expiry."""
    return (ex.due_at is not None and ex.due_at <= now) or reminder_due(ex, now)
