"""Saying a node's text and content to the contact, as its channel can show it.

One path for every node that speaks (message, question, handoff, end), so a text in
two languages, a list built from a service's answer and a channel that only shows
text behave the same wherever they appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trilha.core.budget import Budget
from trilha.core.content import (
    ContentFields,
    Localized,
    Said,
    degrade,
    render_content,
)
from trilha.core.expressions import compile_expression
from trilha.core.reengage import template_instead
from trilha.core.template_messages import render_template_message
from trilha.core.templates import render
from trilha.errors import OutsideWindow
from trilha.processors.base import StepContext


def language_of(ctx: StepContext) -> str | None:
    """The contact's language as the flow reads it (``sys.language``)."""
    sys = ctx.variables.get("sys")
    language = sys.get("language") if isinstance(sys, Mapping) else None
    return language if isinstance(language, str) else None


def say(ctx: StepContext, text: Localized | None, node: ContentFields, what: str) -> Said:
    """Render ``text`` and ``node``'s content for the contact and degrade it to what
    the channel renders; one budget spans the whole message, its template included.

    On a channel with a customer-service window (:attr:`StepContext.window`): outside
    it, the node's ``template`` is sent instead (``content.type: template``, the text as
    its plain fallback), and a node without one raises :class:`OutsideWindow`; inside
    it, the template rides along in ``content["template"]`` for the channel to send if
    the platform says the window closed meanwhile."""
    budget: Budget = ctx.budget(what)
    variables = ctx.variables

    def fill(template: str, extra: Mapping[str, Any] | None) -> str:
        scope = variables if extra is None else {**variables, **extra}
        return render(template, scope, budget)

    def evaluate(source: str) -> Any:
        return compile_expression(source).evaluate(variables, budget)

    language = language_of(ctx)
    said = render_content(
        text,
        node,
        fill=fill,
        evaluate=evaluate,
        language=language,
        default_language=ctx.flow.default_language,
    )
    said = degrade(said, ctx.renders, language)
    window = ctx.window
    if window is None:
        return said
    is_open = window.open_at(ctx.now)
    if node.template is None:
        if is_open:
            return said
        raise OutsideWindow(f"{window.why_closed(ctx.now)}, and the node has no template")
    notes = list(said.truncated)
    template = render_template_message(node.template, lambda t: fill(t, None), notes)
    content = dict(said.content or {"type": "text", "text": said.text})
    content["template"] = template
    if is_open:
        return Said(said.text, content, tuple(notes), said.degraded)
    sent = f"template '{node.template.name}' sent instead ({window.why_closed(ctx.now)})"
    # the same content a 131047 reported later switches the message to, options kept
    instead = template_instead(content, said.text)
    assert instead is not None  # the content carries the template just rendered
    return Said(said.text, instead, tuple(notes), (sent,))
