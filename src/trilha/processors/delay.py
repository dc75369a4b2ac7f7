"""``delay``: a durable timer. The due time is in the store, not in a sleeping task."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import DelayNode
from trilha.processors.base import StepContext, StepResult, WaitTimer


class DelayProcessor:
    node_type: ClassVar[str] = "delay"
    node_model: ClassVar[type[DelayNode]] = DelayNode
    effectful: ClassVar[bool] = False

    async def run(self, node: DelayNode, ctx: StepContext) -> StepResult:
        due = ctx.node_state.get("dueAt")
        if due is None:
            due_at = ctx.now + node.seconds
            if node.seconds <= 0:
                return StepResult(output={"waited": 0})
            return StepResult(
                wait=WaitTimer(due_at), node_state={"dueAt": due_at}, output={"dueAt": due_at}
            )
        if ctx.now < float(due):  # woken early (e.g. resumed by an operator): wait on
            return StepResult(wait=WaitTimer(float(due)), node_state={"dueAt": due})
        return StepResult(output={"waited": node.seconds})
