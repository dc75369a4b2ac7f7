"""``wait_event``: wait for a signal from outside (a payment confirmed), durably.

The engine reads the oldest pending signal of the node's event before it runs the
node (:attr:`~trilha.processors.base.StepContext.signal`) and marks it consumed in
the commit of the step that takes it, so a signal is applied once even when the
worker dies in between. Without one the node waits: its due time is kept as node
state (``dueAt``), so a stale wake or a crash does not push the timeout back.
"""

from __future__ import annotations

from typing import Any, ClassVar

from trilha.core.flow import WaitEventNode
from trilha.core.signals import event_wait
from trilha.processors.base import StepContext, StepResult, WaitEvent


class WaitEventProcessor:
    node_type: ClassVar[str] = "wait_event"
    node_model: ClassVar[type[WaitEventNode]] = WaitEventNode
    effectful: ClassVar[bool] = False

    async def run(self, node: WaitEventNode, ctx: StepContext) -> StepResult:
        signal = ctx.signal
        if signal is not None and signal.event == node.event:
            variables: dict[str, Any] = (
                {} if node.save_as is None else {node.save_as: signal.payload}
            )
            return StepResult(
                variables=variables,
                consumed_signal=True,
                output={"event": node.event, "signalId": signal.signal_id},
            )
        due = ctx.node_state.get("dueAt")
        if not isinstance(due, int | float):
            timeout = node.input_timeout_seconds or ctx.flow.settings.input_timeout_seconds
            due = ctx.now + timeout
        return StepResult(
            wait=WaitEvent(node.event, float(due)),
            node_state={"event": node.event, "dueAt": float(due)},
            output={"waitingFor": event_wait(node.event)},
        )
