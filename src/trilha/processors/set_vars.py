"""``set``: assign variables from literals, templates and safe expressions.

Dotted names (``customer.name``) write into nested objects, creating them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from trilha.core.expressions import compile_expression
from trilha.core.flow import SetNode
from trilha.core.templates import render_value
from trilha.processors.base import StepContext, StepResult


class SetProcessor:
    node_type: ClassVar[str] = "set"
    node_model: ClassVar[type[SetNode]] = SetNode
    effectful: ClassVar[bool] = False

    async def run(self, node: SetNode, ctx: StepContext) -> StepResult:
        values: dict[str, Any] = {}
        for name, value in node.variables.items():
            values[name] = render_value(value, ctx.variables, ctx.budget(f"the value of '{name}'"))
        for name, source in node.expressions_.items():
            budget = ctx.budget(f"the value of '{name}'")
            values[name] = compile_expression(source).evaluate(ctx.variables | values, budget)
        return StepResult(variables=values, output=values)
