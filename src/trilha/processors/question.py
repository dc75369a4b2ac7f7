"""``question``: ask, wait for the reply, validate it, re-ask up to ``maxInvalid``.

The node keeps ``{"asked": true, "invalid": N}`` as node state while it
waits, so a crash between the question and the reply neither repeats the
question nor forgets how many wrong answers were given. A reply longer than
``[engine] max_input_chars`` is an invalid answer before any check reads it.

While it waits, its ``reminders`` are said once each, at their time, with the
schedule in the same node state (:mod:`trilha.core.silence`): the step that says a
reminder commits it as said. After an outage that let several fall due, only the
latest is said (one nudge, not a burst); the others are named in the step's output.
A reply, even an invalid one, shows the contact is there: the re-ask starts the wait
over, its input timeout and its reminders counted from that reply.
"""

from __future__ import annotations

from typing import Any, ClassVar

from trilha.core.answers import Accepted, Refused, check_answer
from trilha.core.content import Localized, Said, options_of
from trilha.core.flow import QuestionNode
from trilha.core.silence import REMIND_AT, SINCE, due_reminders, schedule
from trilha.core.states import Outcome
from trilha.errors import OutsideWindow
from trilha.processors.base import End, StepContext, StepResult, WaitInput
from trilha.processors.saying import say


class QuestionProcessor:
    node_type: ClassVar[str] = "question"
    node_model: ClassVar[type[QuestionNode]] = QuestionNode
    effectful: ClassVar[bool] = False

    async def run(self, node: QuestionNode, ctx: StepContext) -> StepResult:
        asked = bool(ctx.node_state.get("asked"))
        timeout = node.input_timeout_seconds or ctx.flow.settings.input_timeout_seconds
        if not asked:
            said = _ask(node, node.text, ctx)
            return StepResult(
                messages=[said],
                wait=_fresh_wait(node, ctx, timeout),
                node_state=_waiting(node, said, 0, ctx.now),
                output={"asked": said.text},
            )
        if ctx.inbound is None:  # woken without a reply: a reminder, or keep waiting
            return _remind(node, ctx, timeout)
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
                wait=_fresh_wait(node, ctx, timeout),
                node_state=_waiting(node, said, invalid, ctx.now),
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


def _fresh_wait(node: QuestionNode, ctx: StepContext, timeout: float) -> WaitInput:
    """A wait that begins now; with reminders, its deadline is the one their schedule
    counts from (``since``), to the microsecond."""
    return WaitInput(timeout, due_at=ctx.now + timeout if node.reminders else None)


def _remind(node: QuestionNode, ctx: StepContext, timeout: float) -> StepResult:
    """Woken while waiting with no reply: say the reminder that is due, if one is, and
    wait on until the same deadline (a reminder does not extend the wait)."""
    state = dict(ctx.node_state)
    since = state.get(SINCE)
    if not isinstance(since, int | float):  # a question without reminders keeps no schedule
        return StepResult(wait=WaitInput(timeout), node_state=state, output={"waiting": True})
    wait = WaitInput(timeout, due_at=since + timeout)
    afters = [r.after_seconds for r in node.reminders]
    due = due_reminders(afters, state, ctx.now)
    if not due:
        return StepResult(wait=wait, node_state=state, output={"waiting": True})
    latest = due[-1]
    reminder = node.reminders[latest]
    state = {k: v for k, v in state.items() if k != REMIND_AT}
    state.update(schedule(afters, since, latest + 1))
    output: dict[str, Any] = {"reminder": latest + 1, "of": len(afters)}
    if len(due) > 1:
        output["skipped"] = [j + 1 for j in due[:-1]]
    try:
        said = say(ctx, reminder.text, reminder, "a reminder")
    except OutsideWindow as exc:
        # a nudge that cannot be sent is not a reason to stop waiting for the reply:
        # the contact may still write (which opens the window again)
        output["notSaid"] = f"outside_window: {exc}"
        return StepResult(wait=wait, node_state=state, output=output)
    output["said"] = said.text
    return StepResult(messages=[said], wait=wait, node_state=state, output=output)


def _waiting(node: QuestionNode, said: Said, invalid: int, now: float) -> dict[str, Any]:
    """The node's state while it waits: asked, wrong answers so far, the options it
    showed (rendered, so a list built from a service's answer is matched as shown) and
    its reminders' schedule, counted from ``now``."""
    state: dict[str, Any] = {"asked": True, "invalid": invalid}
    if node.reminders:
        state.update(schedule([r.after_seconds for r in node.reminders], now, 0))
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
