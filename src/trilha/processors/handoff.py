"""``handoff``: record a handoff to a human desk; end with outcome ``escalated``
(``mode: end``), or wait while a person holds the conversation (``mode: wait``)."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.content import Said
from trilha.core.flow import HandoffNode
from trilha.core.hold import hold_state
from trilha.core.states import Outcome
from trilha.core.templates import render
from trilha.processors.base import End, HandoffRequest, StepContext, StepResult, WaitHuman
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
        messages: list[str | Said] = [say(ctx, node.text, node, "the message")] if speaks else []
        if node.mode == "wait":
            due = None if node.return_after_seconds is None else ctx.now + node.return_after_seconds
            return StepResult(
                messages=messages,
                handoff=HandoffRequest(node.queue, reason, "wait"),
                wait=WaitHuman(due),
                node_state=hold_state(node.queue, reason, ctx.now),
                output={"queue": node.queue, "mode": "wait"},
            )
        return StepResult(
            messages=messages,
            handoff=HandoffRequest(node.queue, reason),
            end=End(outcome=Outcome.ESCALATED, reason=f"handed off to queue '{node.queue}'"),
            output={"queue": node.queue},
        )
