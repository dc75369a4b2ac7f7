"""``question``: ask, wait for the reply, validate it, re-ask up to ``maxInvalid``.

The node keeps ``{"asked": true, "invalid": N}`` as node state while it
waits, so a crash between the question and the reply neither repeats the
question nor forgets how many wrong answers were given. A reply longer than
``[engine] max_input_chars`` is an invalid answer before any check reads it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from trilha.core.answers import Accepted, Refused, check_answer
from trilha.core.content import Localized, Said, options_of
from trilha.core.flow import QuestionNode
from trilha.core.states import Outcome
from trilha.processors.base import End, StepContext, StepResult, WaitInput
from trilha.processors.saying import say


class QuestionProcessor:
    node_type: ClassVar[str] = "question"
    node_model: ClassVar[type[QuestionNode]] = QuestionNode
    effectful: ClassVar[bool] = False

    async def run(self, node: QuestionNode, ctx: StepContext) -> StepResult:
        asked = bool(ctx.node_state.get("asked"))
        timeout = ctx.flow.settings.input_timeout_seconds
        if not asked:
            said = _ask(node, node.text, ctx)
            return StepResult(
                messages=[said],
                wait=WaitInput(timeout),
                node_state=_waiting(node, said, 0),
                output={"asked": said.text},
            )
        if ctx.inbound is None:  # woken without a reply: keep waiting, say nothing again
            return StepResult(
                wait=WaitInput(timeout), node_state=dict(ctx.node_state), output={"waiting": True}
            )
        answer = ctx.inbound.text
        longest = ctx.config.engine.max_input_chars
        offered = ctx.node_state.get("options")
        verdict: Accepted | Refused = (
            Refused(f"longer than {longest} characters (max_input_chars)")
            if len(answer) > longest  # refused before any check reads it
            else check_answer(
                node.validate_,
                answer,
                ctx.inbound.content,
                offered if isinstance(offered, list) else None,
            )
        )
        if isinstance(verdict, Accepted):
            return StepResult(
                variables={node.variable: verdict.value},
                consumed_input=True,
                output={"answer": verdict.value},
            )
        invalid = int(ctx.node_state.get("invalid", 0)) + 1
        if invalid <= node.max_invalid:
            said = _ask(node, node.invalid_text or node.text, ctx)
            return StepResult(
                messages=[said],
                wait=WaitInput(timeout),
                node_state=_waiting(node, said, invalid),
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


def _ask(node: QuestionNode, text: Localized, ctx: StepContext) -> Said:
    return say(ctx, text, node, "the question")


def _waiting(node: QuestionNode, said: Said, invalid: int) -> dict[str, Any]:
    """The node's state while it waits: asked, wrong answers so far, and the options it
    showed (rendered, so a list built from a service's answer is matched as shown)."""
    state: dict[str, Any] = {"asked": True, "invalid": invalid}
    options = options_of(said.content) if said.content is not None else []
    if options:
        synonyms = _synonyms(node)
        state["options"] = [
            {"id": o["id"], "title": o["title"]}
            | ({"synonyms": synonyms[o["id"]]} if synonyms.get(o["id"]) else {})
            for o in options
        ]
    return state


def _synonyms(node: QuestionNode) -> dict[str, list[str]]:
    """The synonyms the author gave the node's buttons and rows, by id."""
    found = {b.id: b.synonyms for b in node.buttons or ()}
    for section in node.list_.sections if node.list_ is not None else ():
        found.update((row.id, row.synonyms) for row in section.rows)
    return found
