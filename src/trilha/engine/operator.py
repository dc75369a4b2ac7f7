"""Operator controls: pause, resume, cancel and advance an execution by hand.

Each operation reads the execution, checks the change against the one
transition table (:func:`~trilha.core.states.check_transition`), and writes
it with :meth:`~trilha.store.base.Store.operator_write`, which bumps the
fencing token: a worker in the middle of a step loses its commit
(:class:`~trilha.errors.StaleLease`) and the step is re-run later from the last
checkpoint, so nothing is applied twice. A write that races a claim or a step
commit is refused by the store and retried from a fresh read.

Every operation is audited: a transition row with the actor and the reason
(who, when, what, why) and an INFO log row ``operator.<operation>``. Advancing
an execution that is already ``running`` changes no state, so the log row
(with the nodes moved from and to) is its only record.

``paused`` makes no progress. The wait's due time and the contact's replies
(inbox rows) are kept: ``resume`` goes back to the state it was paused from,
a delay whose due time passed meanwhile fires at once and replies that
arrived are applied. A paused ``running``/``recovering``/``fallback``/
``degraded`` execution resumes as ``running``, now (a retry backoff is simply
retried now; ``paused -> recovering`` is not in the table).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from trilha.core.execution import Execution, LogRecord, Transition
from trilha.core.states import ExecutionStatus, Outcome, check_transition
from trilha.engine.engine import Engine
from trilha.errors import FlowError, IllegalTransition, StaleLease
from trilha.observability.logging import echo_trail
from trilha.store.base import Store

S = ExecutionStatus

#: what a paused execution waited on, by the state it returns to
_WAITS = {S.WAITING_INPUT: "input", S.WAITING_DELAY: "timer"}

#: changes the execution in place, returns the reason recorded in its history
_Change = Callable[[Execution, float], Awaitable[str]]


class Operator:
    """Pause, resume, cancel and advance executions on an operator's behalf."""

    def __init__(self, store: Store, engine: Engine, *, attempts: int = 5) -> None:
        self.store = store
        self.engine = engine
        self.clock = engine.clock
        #: read-modify-write rounds before giving up on an execution that keeps changing
        self.attempts = attempts

    async def pause(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """Stop an active execution where it is; its due time and replies are kept."""
        return await self._apply(execution_id, "pause", actor, reason, _pause)

    async def resume(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """Return a paused execution to the state it was paused from."""
        return await self._apply(execution_id, "resume", actor, reason, _resume)

    async def cancel(
        self, execution_id: str, *, actor: str = "operator", reason: str | None = None
    ) -> Execution:
        """End an active execution with outcome ``cancelled``."""
        return await self._apply(execution_id, "cancel", actor, reason, _cancel)

    async def advance(
        self,
        execution_id: str,
        to_node: str | None = None,
        *,
        actor: str = "operator",
        reason: str | None = None,
    ) -> Execution:
        """Move an active execution to ``to_node`` (of the flow version it is pinned to),
        or to its current node's ``next``, and run it from there now."""

        async def change(ex: Execution, now: float) -> str:
            _allow(ex, "advance", S.RUNNING)
            target = await self._target(ex, to_node)
            moved_from = ex.current_node_id
            ex.status, ex.paused_from = S.RUNNING, None
            ex.current_node_id, ex.node_state, ex.attempts = target, {}, 0
            ex.waiting_for = ex.due_at = None
            ex.wake_at = ex.turn_started_at = now
            return f"advanced by an operator from '{moved_from}' to '{target}'"

        return await self._apply(execution_id, "advance", actor, reason, change)

    async def _target(self, ex: Execution, to_node: str | None) -> str:
        flow = await self.engine.flow(ex.flow_id, ex.flow_version)
        where = f"flow '{flow.id}' v{flow.version} (execution {ex.id} is pinned to it)"
        if to_node is not None:
            if flow.node(to_node) is None:
                raise FlowError(f"no node '{to_node}' in {where}", node_id=to_node)
            return to_node
        node = flow.node(ex.current_node_id or "")
        if node is None:
            raise FlowError(
                f"the current node '{ex.current_node_id}' is not in {where}; name a target node",
                node_id=ex.current_node_id,
            )
        if node.next is None:
            raise FlowError(
                f"node '{node.id}' has no next node; name a target node", node_id=node.id
            )
        return node.next

    async def _apply(
        self, execution_id: str, operation: str, actor: str, reason: str | None, change: _Change
    ) -> Execution:
        """Read, change, write under the token read; again from a fresh read if a worker
        claimed the execution or committed a step in between."""
        for _ in range(self.attempts):
            ex = await self.store.get_execution(execution_id)
            token, source, node = ex.fencing_token, ex.status, ex.current_node_id
            now = self.clock.now()
            what = await change(ex, now)
            why = f"{what}: {reason}" if reason else what
            # an advance of a running execution stays running: not a transition, only logged
            transitions = (
                [Transition(ex.id, source, ex.status, why, now, actor, ex.current_node_id)]
                if ex.status is not source
                else []
            )
            context: dict[str, Any] = {
                "operation": operation,
                "actor": actor,
                "reason": reason,
                "from": source.value,
                "to": ex.status.value,
            }
            if ex.current_node_id != node:
                context |= {"fromNode": node, "toNode": ex.current_node_id}
            log = LogRecord(
                ex.id, "INFO", f"operator.{operation}", now, ex.current_node_id, None, context
            )
            try:
                written = await self.store.operator_write(
                    ex, expected_token=token, transitions=transitions, logs=[log], now=now
                )
            except StaleLease:
                continue
            echo_trail([log], written)
            return written
        raise StaleLease(
            f"execution {execution_id} kept changing; {operation} was not applied"
            f" after {self.attempts} attempts, try again"
        )


async def _pause(ex: Execution, now: float) -> str:
    _allow(ex, "pause", S.PAUSED, ex.status is not S.PAUSED)
    ex.paused_from, ex.status = ex.status, S.PAUSED
    ex.wake_at = None
    ex.waiting_for = "operator"
    return "paused by an operator"


async def _resume(ex: Execution, now: float) -> str:
    paused_from = ex.paused_from
    target = paused_from if paused_from is not None and paused_from in _WAITS else S.RUNNING
    _allow(ex, "resume", target, ex.status is S.PAUSED)
    ex.status, ex.paused_from = target, None
    ex.waiting_for = _WAITS.get(target)
    if target is S.RUNNING:
        ex.wake_at, ex.turn_started_at = now, now
    else:  # the store wakes a waiting_input now if replies arrived meanwhile
        ex.wake_at = now if ex.due_at is None or ex.due_at < now else ex.due_at
    return "resumed by an operator"


async def _cancel(ex: Execution, now: float) -> str:
    _allow(ex, "cancel", S.CANCELLED)
    ex.status, ex.outcome, ex.paused_from = S.CANCELLED, Outcome.CANCELLED, None
    ex.wake_at = ex.due_at = ex.waiting_for = None
    ex.ended_at = now
    return "cancelled by an operator"


def _allow(ex: Execution, operation: str, target: ExecutionStatus, when: bool = True) -> None:
    """Refuse ``operation`` unless ``when`` holds, the execution is active and the table
    allows the move; the error names the current state."""
    if when and not ex.status.terminal:
        try:
            check_transition(ex.status, target)
        except IllegalTransition:
            pass
        else:
            return
    raise IllegalTransition(
        f"cannot {operation} execution {ex.id}: it is {ex.status.value}",
        source=ex.status,
        target=target,
    )
