"""A message the platform failed after accepting it because the contact's window was
closed (WhatsApp's ``131047``, re-engagement needed), sent again as its template.

Inside the customer-service window a node with a ``template`` sends its normal message
with the template riding along in ``content["template"]``
(:func:`trilha.processors.saying.say`). When the platform reports later, through a
status, that the window had closed, the message is queued again with the content the
engine would have chosen outside the window: the template, the text as its plain
fallback, the options kept so a reply picks one as it would. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from trilha.core.content import options_of

#: Meta's code for a message sent outside the contact's 24-hour window
REENGAGEMENT_CODE: Final = 131047


def template_instead(content: Mapping[str, Any] | None, text: str) -> dict[str, Any] | None:
    """The content that sends ``content``'s template alternative in its place; ``None``
    when it has none, or is a template already (switched before, or one from the start:
    sending it again would not reach a closed window any better)."""
    if content is None or content.get("type") == "template":
        return None
    template = content.get("template")
    if not isinstance(template, Mapping):
        return None
    instead: dict[str, Any] = {"type": "template", "template": dict(template), "text": text}
    options = [o for o in options_of(content) if "id" in o and "title" in o]
    if options:
        instead["options"] = [{"id": o["id"], "title": o["title"]} for o in options]
    return instead
