"""A person holds the conversation: a ``handoff`` in ``wait`` mode, until it is handed back.

A held execution is ``paused`` with ``waiting_for = "human"`` and no ``paused_from``:
an operator's pause always records the state it paused (``resume`` returns there), a
person's hold has nothing to return to but the flow, through a handback. The handoff
node's scratch (``node_state["hold"]``) keeps the queue, the reason and when the hold
began; ``due_at`` (and ``wake_at``) is the ``returnAfterSeconds`` deadline while no
person has answered, cleared by the first agent message.

Everything here is pure: what a hold is, where a handback goes, and the keys that make
a person's message and a forwarded contact message unique.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from trilha.core.execution import Execution, iso
from trilha.core.flow import Flow, HandoffNode
from trilha.core.states import ExecutionStatus
from trilha.errors import FlowError

#: what a held execution waits for (the API's ``waitingFor``)
HUMAN: Final = "human"
#: the handoff node's scratch key for the hold (queue, reason, since)
HOLD: Final = "hold"


def held(ex: Execution) -> bool:
    """Whether a person holds the conversation of ``ex`` now."""
    return ex.status is ExecutionStatus.PAUSED and ex.waiting_for == HUMAN


def hold_state(queue: str, reason: str | None, since: float) -> dict[str, Any]:
    """The handoff node's scratch while a person holds the conversation."""
    return {HOLD: {"queue": queue, "reason": reason, "since": since}}


def hold_view(ex: Execution) -> dict[str, Any] | None:
    """Who holds the conversation, as the API and the debugger show it (``heldBy``):
    the queue, the handoff's reason, since when, the node that handed it over and when
    the bot takes it back by itself (``returnAt``: null once a person answered, or
    when the node has no ``returnAfterSeconds``). ``None`` unless held."""
    if not held(ex):
        return None
    scratch = ex.node_state.get(HOLD)
    hold = scratch if isinstance(scratch, dict) else {}
    since = hold.get("since")
    return {
        "queue": hold.get("queue"),
        "reason": hold.get("reason"),
        "since": iso(since) if isinstance(since, int | float) else None,
        "nodeId": ex.current_node_id,
        "returnAt": iso(ex.due_at),
    }


def handback_target(flow: Flow, ex: Execution, node_id: str | None) -> str:
    """Where a handback resumes ``ex``: ``node_id`` (a node of the flow version it is
    pinned to), else the handoff node's ``next``; :class:`FlowError` naming why not."""
    where = f"flow '{flow.id}' v{flow.version} (execution {ex.id} is pinned to it)"
    if node_id is not None:
        if flow.node(node_id) is None:
            raise FlowError(f"no node '{node_id}' in {where}", node_id=node_id)
        return node_id
    node = flow.node(ex.current_node_id or "")
    if node is None or node.next is None:
        raise FlowError(
            f"the handoff node '{ex.current_node_id}' has no next: name the node to hand"
            " back to (nodeId)",
            node_id=ex.current_node_id,
        )
    return node.next


def return_target(flow: Flow, ex: Execution) -> str | None:
    """Where the bot takes a held conversation back by itself (``returnAfterSeconds``
    passed with no agent message): the node's ``onReturnTimeout``, else its ``next``."""
    node = flow.node(ex.current_node_id or "")
    if isinstance(node, HandoffNode):
        return node.on_return_timeout or node.next
    return node.next if node is not None else None


def agent_key(execution_id: str, seq: int, message_id: str) -> str:
    """The outbox key of a person's message: the step the hold began at, then a digest of
    the platform's ``messageId`` (any text: it must not end the key as ``:end``, the
    final notice's mark), so the channel drops a repeat as it does the bot's."""
    digest = hashlib.blake2b(message_id.encode(), digest_size=8).hexdigest()
    return f"{execution_id}:{seq}:agent-{digest}"


def desk_message_key(execution_id: str, inbox_id: int) -> str:
    """The ``Idempotency-Key`` of a contact's message forwarded to the desk."""
    return f"handoff-message:{execution_id}:{inbox_id}"
