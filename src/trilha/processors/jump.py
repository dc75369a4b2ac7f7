"""``jump``: continue the same execution in another flow (its latest version by default)."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.flow import JumpNode
from trilha.processors.base import Jump, StepContext, StepResult


class JumpProcessor:
    node_type: ClassVar[str] = "jump"
    node_model: ClassVar[type[JumpNode]] = JumpNode
    effectful: ClassVar[bool] = False

    async def run(self, node: JumpNode, ctx: StepContext) -> StepResult:
        return StepResult(
            jump=Jump(node.flow_id, node.version, node.node_id),
            output={"flowId": node.flow_id, "version": node.version},
        )
