"""``end``: optionally say goodbye, then complete."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import EndNode
from trilha.core.templates import render
from trilha.processors.base import End, StepContext, StepResult


class EndProcessor:
    node_type: ClassVar[str] = "end"
    node_model: ClassVar[type[EndNode]] = EndNode
    effectful: ClassVar[bool] = False

    async def run(self, node: EndNode, ctx: StepContext) -> StepResult:
        return StepResult(
            messages=[render(node.text, ctx.variables, ctx.budget("the message"))]
            if node.text
            else [],
            end=End(reason=f"reached end '{node.id}'"),
        )
