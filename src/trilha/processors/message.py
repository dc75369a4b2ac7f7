"""``message``: say a text, buttons, a list, media or a place to the contact, and move on."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import MessageNode
from trilha.processors.base import StepContext, StepResult
from trilha.processors.saying import say


class MessageProcessor:
    node_type: ClassVar[str] = "message"
    node_model: ClassVar[type[MessageNode]] = MessageNode
    effectful: ClassVar[bool] = False

    async def run(self, node: MessageNode, ctx: StepContext) -> StepResult:
        said = say(ctx, node.text, node, "the message")
        return StepResult(messages=[said], output={"text": said.text})
