"""``handoff``: record a handoff to a human desk and end with outcome ``escalated``."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import HandoffNode
from trilha.core.states import Outcome
from trilha.core.templates import render
from trilha.processors.base import End, HandoffRequest, StepContext, StepResult


class HandoffProcessor:
    node_type: ClassVar[str] = "handoff"
    node_model: ClassVar[type[HandoffNode]] = HandoffNode
    effectful: ClassVar[bool] = False

    async def run(self, node: HandoffNode, ctx: StepContext) -> StepResult:
        reason = (
            render(node.reason, ctx.variables, ctx.budget("the reason")) if node.reason else None
        )
        return StepResult(
            messages=[render(node.text, ctx.variables, ctx.budget("the message"))]
            if node.text
            else [],
            handoff=HandoffRequest(node.queue, reason),
            end=End(outcome=Outcome.ESCALATED, reason=f"handed off to queue '{node.queue}'"),
            output={"queue": node.queue},
        )
