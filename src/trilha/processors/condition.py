"""``condition``: follow the first branch whose expression holds, else ``default``."""

from __future__ import annotations

from typing import ClassVar

from trilha.core.expressions import compile_expression, truthy
from trilha.core.flow import ConditionNode
from trilha.core.states import Outcome
from trilha.processors.base import End, StepContext, StepResult


class ConditionProcessor:
    node_type: ClassVar[str] = "condition"
    node_model: ClassVar[type[ConditionNode]] = ConditionNode
    effectful: ClassVar[bool] = False

    async def run(self, node: ConditionNode, ctx: StepContext) -> StepResult:
        for i, branch in enumerate(node.branches):
            when = compile_expression(branch.when)
            if truthy(when.evaluate(ctx.variables, ctx.budget(f"branches[{i}].when"))):
                return StepResult(next_node=branch.next, output={"branch": i, "when": branch.when})
        if node.default is not None:
            return StepResult(next_node=node.default, output={"branch": "default"})
        return StepResult(
            end=End(outcome=Outcome.COMPLETED, reason=f"no branch of '{node.id}' matched"),
            output={"branch": None},
        )
