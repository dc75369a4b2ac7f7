"""``handoff``: record a handoff to a human desk and end with outcome ``escalated``."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import HandoffNode
from trilha.core.states import Outcome
from trilha.core.templates import render
from trilha.processors.base import End, HandoffRequest, StepContext, StepResult
from trilha.processors.saying import say


class HandoffProcessor:
    node_type: ClassVar[str] = "handoff"
    node_model: ClassVar[type[HandoffNode]] = HandoffNode
    effectful: ClassVar[bool] = False

    async def run(self, node: HandoffNode, ctx: StepContext) -> StepResult:
        reason = (
            render(node.reason, ctx.variables, ctx.budget("the reason")) if node.reason else None
        )
        speaks = node.text is not None or node.rich()
        return StepResult(
            messages=[say(ctx, node.text, node, "the message")] if speaks else [],
            handoff=HandoffRequest(node.queue, reason),
            end=End(outcome=Outcome.ESCALATED, reason=f"handed off to queue '{node.queue}'"),
            output={"queue": node.queue},
        )
