"""``end``: optionally say goodbye, then complete."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import EndNode
from trilha.processors.base import End, StepContext, StepResult
from trilha.processors.saying import say


class EndProcessor:
    node_type: ClassVar[str] = "end"
    node_model: ClassVar[type[EndNode]] = EndNode
    effectful: ClassVar[bool] = False

    async def run(self, node: EndNode, ctx: StepContext) -> StepResult:
        speaks = node.text is not None or node.rich()
        return StepResult(
            messages=[say(ctx, node.text, node, "the message")] if speaks else [],
            end=End(reason=f"reached end '{node.id}'"),
        )
