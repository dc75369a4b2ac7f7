"""``question``: ask, wait for the reply, validate it, re-ask up to ``maxInvalid``.

The node keeps ``{"asked": true, "invalid": N}`` as node state while it
waits, so a crash between the question and the reply neither repeats the
question nor forgets how many wrong answers were given. A reply longer than
``[engine] max_input_chars`` is an invalid answer before any check reads it.
"""

from __future__ import annotations

from typing import ClassVar

from trilha.core.answers import Accepted, Refused, check_answer
from trilha.core.flow import QuestionNode
from trilha.core.states import Outcome
from trilha.core.templates import render
from trilha.processors.base import End, StepContext, StepResult, WaitInput


class QuestionProcessor:
    node_type: ClassVar[str] = "question"
    node_model: ClassVar[type[QuestionNode]] = QuestionNode
    effectful: ClassVar[bool] = False

    async def run(self, node: QuestionNode, ctx: StepContext) -> StepResult:
        asked = bool(ctx.node_state.get("asked"))
        timeout = ctx.flow.settings.input_timeout_seconds
        if not asked or ctx.inbound is None:
            text = render(node.text, ctx.variables, ctx.budget("the question"))
            return StepResult(
                messages=[] if asked else [text],
                wait=WaitInput(timeout),
                node_state={"asked": True, "invalid": int(ctx.node_state.get("invalid", 0))},
                output={"asked": text},
            )
        answer = ctx.inbound.text
        longest = ctx.config.engine.max_input_chars
        verdict: Accepted | Refused = (
            Refused(f"longer than {longest} characters (max_input_chars)")
            if len(answer) > longest  # refused before any check reads it
            else check_answer(node.validate_, answer)
        )
        if isinstance(verdict, Accepted):
            return StepResult(
                variables={node.variable: verdict.value},
                consumed_input=True,
                output={"answer": verdict.value},
            )
        invalid = int(ctx.node_state.get("invalid", 0)) + 1
        if invalid <= node.max_invalid:
            retry_text = render(
                node.invalid_text or node.text, ctx.variables, ctx.budget("the question")
            )
            return StepResult(
                messages=[retry_text],
                wait=WaitInput(timeout),
                node_state={"asked": True, "invalid": invalid},
                consumed_input=True,
                output={"invalid": verdict.reason, "attempt": invalid},
            )
        if node.on_invalid is not None:
            return StepResult(
                next_node=node.on_invalid,
                consumed_input=True,
                output={"invalid": verdict.reason, "gaveUp": True},
            )
        return StepResult(
            end=End(
                outcome=Outcome.INVALID_INPUT, reason=f"too many invalid answers to '{node.id}'"
            ),
            consumed_input=True,
            output={"invalid": verdict.reason, "gaveUp": True},
        )
