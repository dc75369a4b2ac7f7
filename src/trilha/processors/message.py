"""``message``: send a text to the contact and move on."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import MessageNode
from trilha.core.templates import render
from trilha.processors.base import StepContext, StepResult


class MessageProcessor:
    node_type: ClassVar[str] = "message"
    node_model: ClassVar[type[MessageNode]] = MessageNode
    effectful: ClassVar[bool] = False

    async def run(self, node: MessageNode, ctx: StepContext) -> StepResult:
        text = render(node.text, ctx.variables, ctx.budget("the message"))
        return StepResult(messages=[text], output={"text": text})
