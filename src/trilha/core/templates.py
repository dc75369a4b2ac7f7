"""``{{ path }}`` placeholders in messages, request bodies and headers.

Templates are deliberately dumb: a placeholder names a variable path and
nothing else. Logic belongs in condition nodes, where
:mod:`trilha.core.expressions` can be validated; keeping templates free of
code means a flow author (or a value a user typed) can never make rendering
execute anything. Text that merely looks like a placeholder but is not a valid
path, such as ``{{ 1+1 }}`` or an unclosed ``{{``, is left exactly as written
rather than rejected, because a chatbot message may legitimately contain
braces.

Rendering counts what it writes against a :class:`~trilha.core.budget.Budget`
(``[engine] max_value_bytes``) as it goes: a template repeating a placeholder of a
large variable thousands of times fails with
:class:`~trilha.errors.LimitExceeded` at the first substitution past the bound,
before the text is joined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from trilha.core.budget import Budget
from trilha.core.paths import MISSING, resolve_path

__all__ = ["render", "render_url", "render_value", "template_paths", "to_text"]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER_RE: Final = re.compile(
    rf"\{{\{{\s*({_IDENTIFIER}(?:\.(?:{_IDENTIFIER}|[0-9]+))*)\s*\}}\}}"
)


def to_text(value: Any) -> str:
    """Format a variable the way a chat user expects to read it.

    Python's own ``str`` would show ``True``, ``None`` and ``3.0``; a message
    should say ``true``, nothing and ``3``. Containers become compact JSON so a
    debugging message shows data in the same notation the flow was written in.
    """
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    if isinstance(value, dict | list | tuple):
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            # Non-string keys or a reference cycle: still show something useful.
            return str(value)
    return str(value)


def render(template: str, variables: Mapping[str, Any], budget: Budget | None = None) -> str:
    """Replace every ``{{ path }}`` in ``template`` with the formatted value.

    A missing variable renders as the empty string instead of failing, because
    a message with a blank is better than a conversation that stops.
    """
    budget = budget or Budget()
    budget.spend(len(template))
    if "{{" not in template:
        return template
    return _PLACEHOLDER_RE.sub(lambda match: _piece(match, variables, budget), template)


def _piece(match: re.Match[str], variables: Mapping[str, Any], budget: Budget) -> str:
    """One placeholder's text, counted before it is made (a value's text is about
    as large as its JSON)."""
    value = resolve_path(variables, match.group(1))
    budget.spend(budget.size_of(value))
    return to_text(value)


def render_value(value: Any, variables: Mapping[str, Any], budget: Budget | None = None) -> Any:
    """Render every string inside a JSON-like ``value`` (dict values, list items).

    A string that is exactly one placeholder, such as ``"{{customer}}"``,
    yields the raw variable so that numbers, booleans and objects keep their
    type in a JSON body (``None`` when missing); the value is shared, not
    copied. Dict keys are not rendered: they are the shape of the request,
    which the flow author fixed, not data. The whole value shares ``budget``: a
    shared reference counts as often as it appears.
    """
    budget = budget or Budget()
    if isinstance(value, str):
        match = _PLACEHOLDER_RE.fullmatch(value)
        if match is not None:
            raw = resolve_path(variables, match.group(1))
            budget.spend(budget.size_of(raw))
            return None if raw is MISSING else raw
        return render(value, variables, budget)
    if isinstance(value, dict):
        return {key: render_value(item, variables, budget) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(item, variables, budget) for item in value]
    return value


def template_paths(template: str) -> list[str]:
    """List the variable paths ``template`` reads, so a flow can be checked at load time.

    Each path appears once, in order of first use, which keeps validation
    messages stable and short.
    """
    return list(dict.fromkeys(match.group(1) for match in _PLACEHOLDER_RE.finditer(template)))


def render_url(template: str, variables: Mapping[str, Any], budget: Budget | None = None) -> str:
    """Render a URL template, percent-encoding each value as one URL component.

    Text a contact typed must not add query parameters or path segments
    (``&``, ``=``, ``?``, ``#``, ``/``, ``..``) to a call into the institution's
    systems. A template that is exactly one placeholder is the author's whole
    URL and is left as is.
    """
    budget = budget or Budget()
    if "{{" not in template:
        return template
    if _PLACEHOLDER_RE.fullmatch(template.strip()):
        return render(template, variables, budget)
    budget.spend(len(template))
    return _PLACEHOLDER_RE.sub(
        lambda match: quote(_piece(match, variables, budget), safe=""), template
    )
