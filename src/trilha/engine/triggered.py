"""The engine's part in conversations that start themselves and keywords that work anywhere.

* A trigger's start (:meth:`Engine.start_triggered`): the contact's message is kept in
  the execution's ``meta`` and read by flows as ``sys.trigger`` (:func:`trigger_meta`);
  the trail says which trigger started it and what it replaced (:func:`triggered_line`).
* A flow's ``interrupts`` (:func:`interruption`): checked where a turn's reply is handed
  to the node waiting for it, before the node reads it. A reply holding a keyword is
  consumed by a step of that node that goes to the interrupt's ``goTo``.
* Bursts (``settings.debounceMs``, :func:`gather_burst`): a reply is taken once the
  window after the contact's last message has passed, the burst's texts as one reply.
  The wait is the execution's ``wake_at`` in the store, so a restart loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from trilha.core.bursts import MAX_BURST, burst_of
from trilha.core.execution import Execution, InboundMessage, LogRecord, iso
from trilha.core.flow import Flow
from trilha.core.keywords import matchable_text
from trilha.core.triggers import TRIGGER_META, TriggerMatch
from trilha.errors import FlowNotFound
from trilha.observability.trail import level_rank
from trilha.processors.base import StepResult

if TYPE_CHECKING:
    from trilha.engine.engine import Engine
    from trilha.engine.turn import _Turn

__all__ = [
    "MERGED",
    "TRIGGER_META",
    "gather_burst",
    "interruption",
    "replaced_reason",
    "trigger_meta",
    "triggered_line",
]

#: the turn's note of a burst's messages before the last one, ``(inbox id, message id)``:
#: the step that consumes the burst marks them applied with it, and names them
MERGED: Final = "mergedInbox"


def trigger_meta(message: InboundMessage, match: TriggerMatch) -> dict[str, Any]:
    """``sys.trigger``: the message that started the execution and the keyword it matched
    (``None``: the default trigger)."""
    return {
        "messageId": message.message_id,
        "text": message.text,
        "type": (message.content or {}).get("type", "text"),
        "keyword": match.keyword,
    }


def triggered_line(
    ex: Execution, message: InboundMessage, match: TriggerMatch, replacing: Execution | None
) -> LogRecord:
    """The trail line of a trigger's start: which trigger, on which message, replacing what."""
    context: dict[str, Any] = {"messageId": message.message_id, "trigger": match.wire()}
    if replacing is not None:
        context["replaced"] = replacing.id
    return LogRecord(
        ex.id, "INFO", "execution.triggered", ex.created_at, ex.current_node_id, None, context
    )


def replaced_reason(ex: Execution, match: TriggerMatch) -> str:
    """Why an interrupting trigger's start cancelled the execution it replaced."""
    return (
        f"replaced by execution {ex.id}: the contact wrote {match.keyword!r}, which"
        f" interrupts to flow '{match.trigger.flow_id}'"
    )


def interruption(flow: Flow, inbound: InboundMessage) -> tuple[StepResult, dict[str, Any]] | None:
    """The step of the node waiting for ``inbound`` that takes the contact to an
    interrupt's ``goTo`` instead of handing it the reply, and its trail line's context;
    ``None`` when the reply holds none of the flow's keywords. The step consumes the
    reply: it is not then an answer."""
    hit = flow.interrupt_for(matchable_text(inbound.text, inbound.content))
    if hit is None:
        return None
    said = {"keyword": hit.keyword, "goTo": hit.value.go_to, "messageId": inbound.message_id}
    step = StepResult(
        next_node=hit.value.go_to,
        consumed_input=True,
        output={"interrupted": {"keyword": hit.keyword, "goTo": hit.value.go_to}},
    )
    return step, said


async def gather_burst(engine: Engine, ex: Execution, turn: _Turn) -> bool:
    """Before a waiting execution takes its reply: with ``settings.debounceMs``, either
    hand it the burst as one reply (``turn.inbound``; False) or, while the window after
    the contact's last message is still open, give the execution back to the store due
    at the window's end (True: the turn is over, nothing ran).

    The window never outlasts the input timeout: past ``due_at`` what has come is taken."""
    try:
        flow = await engine.flow(ex.flow_id, ex.flow_version)
    except FlowNotFound:
        return False  # the turn ends the execution for it, as for any reply
    window = flow.settings.debounce_ms / 1000
    if window <= 0:
        return False
    now = engine.clock.now()
    pending = await engine.store.pending_inbound(ex.id, limit=MAX_BURST + 1)
    burst = burst_of(pending, window)
    if burst is None:
        return False
    timed_out = ex.due_at is not None and now >= ex.due_at
    if burst.ready_at is not None and now < burst.ready_at and not timed_out:
        wake = burst.ready_at if ex.due_at is None else min(burst.ready_at, ex.due_at)
        context = {"messages": len(burst.messages), "until": iso(wake)}
        engine._log(turn, "DEBUG", "message.burst_waiting", None, context)
        await engine.store.snooze(
            ex.id,
            worker_id=engine.worker_id,
            fencing_token=ex.fencing_token,
            wake_at=wake,
            now=now,
            # the turn's lines so far, kept as a commit keeps them (``logging.store_level``)
            logs=[r for r in turn.commit.logs if level_rank(r.level) >= engine._store_floor],
        )
        return True
    turn.inbound = burst.merged()
    if len(burst.messages) > 1:
        turn.extra[MERGED] = [(m.id, m.message_id) for m in burst.messages[:-1]]
    return False
