"""The engine's side of a person holding the conversation (:mod:`trilha.core.hold`).

A ``handoff`` in ``wait`` mode ends its turn ``paused``, waiting for ``human``: its
commit marks the contact's replies not yet applied as said to the person (the store
holds them and forwards them to the desk, :attr:`StepCommit.hold_inbox`), so none is
ever taken as an answer once the bot has the conversation back. Nothing runs while a
person holds it; the only wake-up is the ``returnAfterSeconds`` deadline (the row's
``wake_at``, durable like any timer), at which the bot takes the conversation back by
itself. A handback by a person is an operator's write
(:meth:`trilha.engine.operator.Operator.handback`), not a step.
"""

from __future__ import annotations

from trilha.core.execution import Execution, iso
from trilha.core.flow import NodeBase
from trilha.core.hold import HUMAN, hold_view, return_target
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.parts import EngineParts
from trilha.engine.turn import _Turn
from trilha.errors import FlowNotFound
from trilha.processors.base import End, WaitHuman

S = ExecutionStatus


class HumanHold(EngineParts):
    """Mixed into :class:`~trilha.engine.engine.Engine`, as
    :class:`~trilha.engine.recovery.Recovery` is; what it takes from the engine is
    declared in :class:`~trilha.engine.parts.EngineParts`."""

    def _hold(self, turn: _Turn, node: NodeBase | None, wait: WaitHuman, queue: str) -> None:
        """Give the conversation to a person: ``paused``, waiting for ``human``, with the
        return deadline as its wake time."""
        ex = turn.commit.execution
        where = node.id if node is not None else ex.current_node_id
        self._move(turn, S.PAUSED, f"a person holds the conversation (queue '{queue}')")
        ex.paused_from = None
        ex.waiting_for = HUMAN
        ex.due_at = ex.wake_at = wait.due_at
        turn.commit.hold_inbox = True
        self._log(
            turn,
            "INFO",
            "handoff.holding",
            node,
            {"queue": queue, "nodeId": where, "returnAt": iso(wait.due_at)},
        )

    async def _return_to_bot(self, ex: Execution, turn: _Turn) -> None:
        """``returnAfterSeconds`` passed with no agent message: the bot takes the
        conversation back at the node's ``onReturnTimeout`` (else ``next``) and runs."""
        now = self.clock.now()
        hold = hold_view(ex) or {}
        from_node = ex.current_node_id
        try:
            flow = await self.flow(ex.flow_id, ex.flow_version)
        except FlowNotFound as exc:
            self._move(turn, S.RUNNING, "no person answered in time; the flow is gone")
            self._end(turn, End(S.FAILED, Outcome.FAILED, str(exc)), None)
            return
        target = return_target(flow, ex)
        self._move(
            turn,
            S.RUNNING,
            f"no person answered within returnAfterSeconds: the bot takes the conversation"
            f" back at '{target}'",
        )
        ex.waiting_for = ex.due_at = None
        ex.paused_from = None
        ex.turn_started_at = now
        self._log(
            turn,
            "INFO",
            "handoff.returned",
            None,
            {
                "reason": "timeout",
                "queue": hold.get("queue"),
                "fromNode": from_node,
                "toNode": target,
            },
        )
        if target is None:  # publishing refuses it; a row from an older trilha
            self._end(
                turn,
                End(S.COMPLETED, Outcome.ESCALATED, "no node to take the conversation back at"),
                None,
            )
            return
        ex.current_node_id, ex.node_state, ex.attempts = target, {}, 0
        await self._run_nodes(ex, flow, turn)
