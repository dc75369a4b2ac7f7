"""The invariants of DESIGN §7, checked on one execution's stored records.

What the engine promises is only as good as the evidence that a real store keeps
it, after crashes, restarts, operator moves and corrupted rows. This module is
that evidence, as a pure function of what the store holds for one execution
(the row, its state history, checkpoints, outbox, inbox rows and trail), so that
the same checks serve an operator on a production store (``trilha check``), the
resilience suite and the tests. Each broken rule is a :class:`Violation` naming
the execution, the rule and what is wrong, in words an operator can act on.

The rules:

- ``state``: terminal, or waiting on something named with a due time: a
  terminal execution has an outcome and an end time and nothing to wake it; a
  wait (input, timer, retry, dependency) names what it waits for and when it
  ends; a paused one waits for an operator and knows where to resume, or is held
  by a person (and wakes at its return deadline, if it has one); any other
  active execution is held by a worker or due for one.
- ``overdue`` (a warning): due more than ``grace`` seconds ago and held by no
  worker: nothing is moving it (the sweeper or a worker should have).
- ``history``: the state history starts at ``running``, each change starts where
  the previous one ended, every change is allowed by the transition table, the
  last one ends in the current state, and time does not go back.
- ``checkpoints``: numbered 1..N without a gap, each sound (its checksum), and
  the step counter agrees (N, or N + 1 after a final notice).
- ``outbox``: each message belongs to a committed step (or is the final notice of
  an ended execution), and the outbox and the trail agree message for message: a
  message without its ``message.queued`` line was written twice or by something
  else; a ``message.queued`` line without its message was lost. A message the trail
  says was delivered (``message.delivered``) is sent in the outbox, and one it says
  was given up (``message.dead``, not redriven since) is dead there.
- ``inbox``: the contact's messages are applied in the order they arrived, each
  by a step that recorded it as its input (one of a burst taken as one reply, by
  the step that took the burst; the message that started the execution by a
  trigger, at its start), and an execution waiting for input with a message not
  yet applied is due now, or within a burst's window after the last one (else the
  reply is stranded); a message held (said to a person) is applied by the hold.
- ``signals``: each signal marked consumed was the input of the step that took it,
  and an execution waiting for an event with a signal of it pending is due now
  (else the signal is stranded).

Trail-based checks run only where the trail is there: a trail purged by
retention, or stored above INFO (``[logging] store_level``), has no
``execution.started`` line, and those checks are skipped for it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from trilha.core.controls import WAITS
from trilha.core.execution import (
    Checkpoint,
    Execution,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    Transition,
    checksum,
)
from trilha.core.flow import MAX_DEBOUNCE_MS
from trilha.core.hold import HUMAN
from trilha.core.signals import Signal, waited_event
from trilha.core.states import ExecutionStatus, is_allowed
from trilha.core.triggers import TRIGGER_META

S = ExecutionStatus
Severity = Literal["error", "warning"]

#: what a recovering execution may say it waits for (the waiting states: ``WAITS``)
_RECOVERY_WAITS = ("retry", "dependency")


@dataclass(frozen=True, slots=True)
class Violation:
    execution_id: str
    rule: str
    detail: str
    severity: Severity = "error"

    def wire(self) -> dict[str, str]:
        return {
            "executionId": self.execution_id,
            "rule": self.rule,
            "severity": self.severity,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Records:
    """Everything the store keeps of one execution, as the checks read it."""

    execution: Execution
    transitions: Sequence[Transition] = ()
    checkpoints: Sequence[Checkpoint] = ()
    outbox: Sequence[OutboundMessage] = ()
    inbox: Sequence[InboundMessage] = ()
    logs: Sequence[LogRecord] = ()
    #: the checkpoints recovery found unsound and set aside (quarantined), by step
    quarantined_steps: frozenset[int] = frozenset()
    signals: Sequence[Signal] = ()


def check(records: Records, *, now: float, grace: float = 60.0) -> list[Violation]:
    """Every rule ``records`` breaks, errors first in rule order, then warnings."""
    found: list[Violation] = []
    ex = records.execution
    for rule, detail, severity in itertools.chain(
        _state(ex, now, grace),
        _history(ex, records.transitions),
        _checkpoints(ex, records.checkpoints, records.outbox, records.quarantined_steps),
        _outbox(ex, records.checkpoints, records.outbox, records.logs),
        _inbox(ex, records.checkpoints, records.inbox, now),
        _signals(ex, records.checkpoints, records.signals, now),
    ):
        found.append(Violation(ex.id, rule, detail, severity))
    found.sort(key=lambda v: v.severity != "error")
    return found


_Finding = tuple[str, str, Severity]


def _state(ex: Execution, now: float, grace: float) -> list[_Finding]:
    out: list[_Finding] = []
    status = ex.status
    leased = ex.lease_owner is not None and (ex.lease_expires_at or 0.0) >= now
    if status.terminal:
        if ex.outcome is None:
            out.append(("state", f"it is {status.value} with no outcome", "error"))
        if ex.ended_at is None:
            out.append(("state", f"it is {status.value} with no end time", "error"))
        if ex.wake_at is not None:
            out.append(("state", f"it is {status.value} but due for a worker", "error"))
        return out
    if ex.outcome is not None or ex.ended_at is not None:
        out.append(("state", f"it is {status.value} (active) but has an outcome or end", "error"))
    if leased:
        return out  # a worker holds it: whatever it waited on, it is being moved now
    if status is S.PAUSED and ex.waiting_for == HUMAN:
        if ex.due_at is not None and ex.wake_at is None:
            out.append(
                ("state", "held by a person with a return time but nothing to wake it", "error")
            )
        elif ex.wake_at is not None and ex.wake_at < now - grace:
            late = now - ex.wake_at
            out.append(("overdue", f"due {late:.0f} s ago and no worker holds it", "warning"))
        return out
    if status is S.PAUSED:
        if ex.paused_from is None:
            out.append(("state", "paused with no state to resume to", "error"))
        if ex.waiting_for != "operator":
            out.append(("state", f"paused but waiting for {ex.waiting_for!r}", "error"))
        return out
    if status in WAITS or status is S.RECOVERING:
        named = (WAITS[status],) if status in WAITS else _RECOVERY_WAITS
        event = waited_event(ex.waiting_for) if status is S.WAITING_INPUT else None
        if ex.waiting_for not in named and not event:
            out.append(
                (
                    "state",
                    f"{status.value} waits for {ex.waiting_for!r}, not {' or '.join(named)}",
                    "error",
                )
            )
        if ex.due_at is None:
            out.append(("state", f"{status.value} with no due time", "error"))
        if ex.wake_at is None:
            out.append(("state", f"{status.value} with nothing to wake it (no wake time)", "error"))
        elif ex.due_at is not None and ex.wake_at > max(ex.due_at, now):
            # waking later than the wait ends; a wake past both is only "due now" (the
            # sweeper and a resume after the due time both set it to their now)
            out.append(("state", f"{status.value} wakes after its due time", "error"))
    elif ex.wake_at is None:
        out.append(
            ("state", f"{status.value}, held by no worker and not due for one: stranded", "error")
        )
    elif ex.wake_at > now + grace:
        # nothing in the engine defers a running execution: it is due now or held
        ahead = ex.wake_at - now
        out.append(("state", f"{status.value} but not due for a worker for {ahead:.0f} s", "error"))
    if ex.wake_at is not None and ex.wake_at < now - grace:
        late = now - ex.wake_at
        out.append(("overdue", f"due {late:.0f} s ago and no worker holds it", "warning"))
    return out


def _history(ex: Execution, history: Sequence[Transition]) -> list[_Finding]:
    out: list[_Finding] = []
    if not history:
        return [("history", "no state history at all", "error")]
    first = history[0]
    if first.source is not None or first.target is not S.RUNNING:
        out.append(("history", f"starts {first.source or 'new'} -> {first.target}", "error"))
    for prev, cur in itertools.pairwise(history):
        if cur.source is not prev.target:
            out.append(
                (
                    "history",
                    f"a change from {cur.source} follows one that ended in {prev.target}"
                    f" (at {cur.at:.3f})",
                    "error",
                )
            )
        if cur.at < prev.at:
            out.append(("history", f"goes back in time at {cur.source} -> {cur.target}", "error"))
    for t in history:
        if not is_allowed(t.source, t.target):
            out.append(
                ("history", f"{t.source or 'new'} -> {t.target} is not in the table", "error")
            )
    if history[-1].target is not ex.status:
        out.append(
            (
                "history",
                f"the last change ends in {history[-1].target}, the execution is {ex.status}",
                "error",
            )
        )
    return out


def _checkpoints(
    ex: Execution,
    checkpoints: Sequence[Checkpoint],
    outbox: Sequence[OutboundMessage],
    quarantined: frozenset[int] = frozenset(),
) -> list[_Finding]:
    out: list[_Finding] = []
    seqs = [c.seq for c in checkpoints]
    if seqs != list(range(1, len(seqs) + 1)):
        missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
        out.append(("checkpoints", f"steps missing from the numbering: {missing}", "error"))
    for c in checkpoints:
        if checksum(c.state) == c.checksum:
            continue
        if c.seq in quarantined:
            # damaged after the fact and found by recovery, which walked back past it
            # and kept a copy aside: a fault that was handled, not an inconsistency
            out.append(
                (
                    "checkpoints",
                    f"step {c.seq} fails its checksum (set aside by recovery)",
                    "warning",
                )
            )
        else:
            out.append(("checkpoints", f"step {c.seq} fails its checksum", "error"))
    n = len(seqs)
    final = f"{ex.id}:{ex.step_seq}:end"
    if ex.step_seq == n + 1 and ex.status.terminal:
        if not any(m.idempotency_key == final for m in outbox):
            out.append(("checkpoints", f"step {ex.step_seq} has no checkpoint", "error"))
    elif ex.step_seq != n:
        out.append(
            ("checkpoints", f"the step counter is {ex.step_seq} with {n} checkpoints", "error")
        )
    return out


def _trail_kept(logs: Sequence[LogRecord]) -> bool:
    return any(r.message == "execution.started" for r in logs)


def _outbox(
    ex: Execution,
    checkpoints: Sequence[Checkpoint],
    outbox: Sequence[OutboundMessage],
    logs: Sequence[LogRecord],
) -> list[_Finding]:
    out: list[_Finding] = []
    keys = Counter(m.idempotency_key for m in outbox)
    for key, n in keys.items():
        if n > 1:
            out.append(("outbox", f"message {key} is in the outbox {n} times", "error"))
    seqs = {c.seq for c in checkpoints}
    final = f"{ex.id}:{ex.step_seq}:end"
    for m in outbox:
        if m.idempotency_key.endswith(":end"):
            if not ex.status.terminal:
                out.append(
                    ("outbox", f"final notice {m.idempotency_key} of an active one", "error")
                )
            elif m.idempotency_key != final:
                what = f"final notice {m.idempotency_key} is not at the last step ({final})"
                out.append(("outbox", what, "error"))
        elif m.step_seq not in seqs:
            out.append(
                (
                    "outbox",
                    f"message {m.idempotency_key} belongs to step {m.step_seq}, never committed",
                    "error",
                )
            )
    if _trail_kept(logs):
        said = Counter(
            str(r.context.get("idempotencyKey")) for r in logs if r.message == "message.queued"
        )
        for key in sorted(set(said) - set(keys)):
            out.append(("outbox", f"message {key} was sent by a step but is missing", "error"))
        for key in sorted(set(keys) - set(said)):
            out.append(("outbox", f"message {key} is in the outbox but no step sent it", "error"))
        for key, n in said.items():
            if n > 1:
                out.append(("outbox", f"message {key} was sent {n} times by steps", "error"))
        out += _deliveries(outbox, logs)
    return out


#: the outbox state the trail's last word on a message means (each line is written in
#: the same store write as the state it tells)
_DELIVERY_STATE = {
    "message.delivered": "sent",
    "message.dead": "dead",
    "message.redriven": "pending",
    # queued again as its template after the channel failed it (the window was closed)
    "message.resent_as_template": "pending",
}


def _deliveries(outbox: Sequence[OutboundMessage], logs: Sequence[LogRecord]) -> list[_Finding]:
    """The trail's last delivery line about each message agrees with the outbox: a
    message told delivered is sent, one told given up is dead, one redriven since is
    pending, as is one queued again as its template (a delivery or a failure after it
    would have said so)."""
    last: dict[str, str] = {}
    for r in logs:
        if r.message in _DELIVERY_STATE:
            last[str(r.context.get("idempotencyKey"))] = r.message
    status = {m.idempotency_key: m.status for m in outbox}
    out: list[_Finding] = []
    for key, line in sorted(last.items()):
        if key in status and status[key] != _DELIVERY_STATE[line]:
            what = f"message {key} is {status[key]} in the outbox, the trail's last word is {line}"
            out.append(("outbox", what, "error"))
    return out


def _inbox(
    ex: Execution,
    checkpoints: Sequence[Checkpoint],
    inbox: Sequence[InboundMessage],
    now: float,
) -> list[_Finding]:
    out: list[_Finding] = []
    by_seq = {c.seq: c for c in checkpoints}
    trigger = ex.meta.get(TRIGGER_META)
    started_by = trigger.get("messageId") if isinstance(trigger, dict) else None
    mine = sorted((m for m in inbox if m.message_id != started_by), key=lambda m: m.id)
    # a message held (said to a person) is applied by the hold, not read by a step
    applied = [m for m in mine if m.applied_at is not None and m.held_at is None]
    pending = [m for m in mine if m.applied_at is None]
    if applied and pending and pending[0].id < applied[-1].id:
        out.append(
            (
                "inbox",
                f"message {pending[0].message_id} was skipped: a later one was applied first",
                "error",
            )
        )
    steps = [by_seq.get(_applied_step(m, checkpoints) or -1) for m in applied]
    order = [c.seq for c in steps if c is not None]
    if order != sorted(order):
        out.append(("inbox", "messages were applied out of the order they arrived", "error"))
    for m, c in zip(applied, steps, strict=True):
        if c is None:
            out.append(
                ("inbox", f"message {m.message_id} is marked applied but no step read it", "error")
            )
    # a burst's window (settings.debounceMs) may hold it past now, never past the longest;
    # a wait_event node's wait keeps the replies for the next question: not stranded
    window = pending[-1].received_at + MAX_DEBOUNCE_MS / 1000 if pending else now
    waits_for_reply = ex.status is S.WAITING_INPUT and waited_event(ex.waiting_for) is None
    if pending and waits_for_reply and (ex.wake_at is None or ex.wake_at > max(now, window)):
        out.append(
            (
                "inbox",
                f"message {pending[0].message_id} waits to be applied but the execution"
                " is not due: the reply is stranded",
                "error",
            )
        )
    return out


def _signals(
    ex: Execution, checkpoints: Sequence[Checkpoint], signals: Sequence[Signal], now: float
) -> list[_Finding]:
    out: list[_Finding] = []
    by_seq = {c.seq: c for c in checkpoints}
    for signal in signals:
        if signal.pending:
            continue
        step = by_seq.get(signal.consumed_step) if signal.consumed_step is not None else None
        given = step.input if step is not None and isinstance(step.input, dict) else {}
        if given.get("signalId") != signal.signal_id:
            out.append(
                (
                    "signals",
                    f"signal {signal.signal_id} is marked consumed by step"
                    f" {signal.consumed_step}, which did not take it",
                    "error",
                )
            )
    event = waited_event(ex.waiting_for) if ex.status is S.WAITING_INPUT else None
    leased = ex.lease_owner is not None and (ex.lease_expires_at or 0.0) >= now
    waiting = [s for s in signals if s.pending and s.event == event]
    if waiting and not leased and (ex.wake_at is None or ex.wake_at > now):
        out.append(
            (
                "signals",
                f"signal {waiting[0].signal_id} of event {event} waits to be applied but the"
                " execution is not due: the signal is stranded",
                "error",
            )
        )
    return out


def _applied_step(message: InboundMessage, checkpoints: Sequence[Checkpoint]) -> int | None:
    """The step whose input is this message (checkpoints record ``{messageId, text}``, and
    a burst's earlier messages as ``burst``)."""
    for c in checkpoints:
        if not isinstance(c.input, dict):
            continue
        burst = c.input.get("burst")
        if c.input.get("messageId") == message.message_id or (
            isinstance(burst, list) and message.message_id in burst
        ):
            return c.seq
    return None
