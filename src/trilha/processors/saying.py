"""Saying a node's text and content to the contact, as its channel can show it.

One path for every node that speaks (message, question, handoff, end), so a text in
two languages, a list built from a service's answer and a channel that only shows
text behave the same wherever they appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trilha.core.budget import Budget
from trilha.core.content import ContentFields, Localized, Said, degrade, render_content
from trilha.core.expressions import compile_expression
from trilha.core.templates import render
from trilha.processors.base import StepContext


def language_of(ctx: StepContext) -> str | None:
    """The contact's language as the flow reads it (``sys.language``)."""
    sys = ctx.variables.get("sys")
    language = sys.get("language") if isinstance(sys, Mapping) else None
    return language if isinstance(language, str) else None


def say(ctx: StepContext, text: Localized | None, node: ContentFields, what: str) -> Said:
    """Render ``text`` and ``node``'s content for the contact and degrade it to what
    the channel renders; one budget spans the whole message."""
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
    return degrade(said, ctx.renders, language)
