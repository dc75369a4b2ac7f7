"""What trilha sends to ``POST /{phone_number_id}/messages`` for one outbound message.

Pure: a message's content (:mod:`trilha.core.content`'s wire form, already rendered and
degraded for a channel that shows everything) becomes the request body Meta documents
(developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):

* no content, or ``text``: ``{"type": "text", "text": {"preview_url", "body"}}``, with
  a link preview when the body has a URL;
* ``buttons``: an ``interactive`` of type ``button`` (header, body, footer, up to 3
  ``reply`` buttons);
* ``list``: an ``interactive`` of type ``list`` (the button, sections of rows);
* ``media``: ``image``, ``video``, ``audio``, ``document`` or ``sticker`` by ``link``,
  with a ``caption`` where Meta shows one (not audio, not stickers) and a document's
  ``filename``;
* ``location``: latitude, longitude, name, address;
* ``template``: an approved template by name and language, its components as given.

Every body carries the message's idempotency key as ``biz_opaque_callback_data``: Meta
echoes it in the ``statuses`` of the webhook, which ties a receipt to trilha's outbox.

Where Meta's limit is tighter than trilha's own (an interactive button message's body
is 1,024 characters, a text's is 4,096), the text is cut with an ellipsis rather than
sent to a certain refusal: a conversation must not stop on a long text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from trilha.core.content import ELLIPSIS, MAX_BODY, MAX_BUTTONS, MAX_CAPTION

#: Meta's limit on the body of an interactive reply-buttons message (a list's is 4,096)
MAX_BUTTONS_BODY: Final = 1_024
#: Meta's limit on ``biz_opaque_callback_data``
MAX_CALLBACK_DATA: Final = 512
#: the longest template name Meta accepts
MAX_TEMPLATE_NAME: Final = 512
#: the template components a message may carry (Meta's: header, body, up to 10 buttons)
MAX_COMPONENTS: Final = 20
#: the media kinds Meta shows a caption with
CAPTIONED: Final = frozenset({"image", "video", "document"})
MEDIA_KINDS: Final = frozenset({"image", "video", "audio", "document", "sticker"})

_URL: Final = re.compile(r"https?://\S", re.IGNORECASE)
_TEMPLATE_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8}){0,3}$")


class Unsendable(ValueError):
    """The message cannot become a request Meta accepts; sending it again changes
    nothing (the channel makes it a permanent failure)."""


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, an ellipsis saying it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def request_body(
    to: str, text: str, content: Mapping[str, Any] | None, *, callback_data: str
) -> dict[str, Any]:
    """The ``/messages`` body sending ``content`` (``None``: the plain ``text``) to
    the WhatsApp user ``to``; raises :class:`Unsendable`."""
    try:
        message = _message(text, content)
    except (KeyError, TypeError, ValueError) as exc:  # content not in trilha's wire form
        if isinstance(exc, Unsendable):
            raise
        raise Unsendable(f"the message's content is not one trilha renders ({exc!r})") from exc
    return envelope(to, message, callback_data=callback_data)


def _message(text: str, content: Mapping[str, Any] | None) -> dict[str, Any]:
    kind = content.get("type") if content is not None else None
    if content is None or kind == "text":
        body = str(content.get("text", text)) if content is not None else text
        message = text_message(body)
    elif kind == "buttons":
        message = buttons_message(content)
    elif kind == "list":
        message = list_message(content)
    elif kind == "media":
        message = media_message(content)
    elif kind == "location":
        message = location_message(content)
    elif kind == "template":
        template = content.get("template")
        if not isinstance(template, Mapping):
            raise Unsendable("a template message without its template")
        message = template_message(template)
    else:  # a type this version does not know: its plain rendering still reads well
        message = text_message(text)
    return message


def envelope(to: str, message: dict[str, Any], *, callback_data: str) -> dict[str, Any]:
    """``message`` (``type`` and its object) addressed as Meta wants it."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        **message,
        "biz_opaque_callback_data": callback_data[:MAX_CALLBACK_DATA],
    }


def text_message(body: str) -> dict[str, Any]:
    if not body.strip():
        raise Unsendable("an empty text (WhatsApp sends no empty message)")
    body = cut(body, MAX_BODY)
    return {"type": "text", "text": {"preview_url": bool(_URL.search(body)), "body": body}}


def _interactive(
    kind: str, content: Mapping[str, Any], action: dict[str, Any], body_limit: int
) -> dict[str, Any]:
    body = str(content.get("text") or "")
    if not body.strip():
        raise Unsendable(f"an interactive {kind} message needs a text")
    interactive: dict[str, Any] = {"type": kind}
    header = content.get("header")
    if header:
        interactive["header"] = {"type": "text", "text": str(header)}
    interactive["body"] = {"text": cut(body, body_limit)}
    footer = content.get("footer")
    if footer:
        interactive["footer"] = {"text": str(footer)}
    interactive["action"] = action
    return {"type": "interactive", "interactive": interactive}


def buttons_message(content: Mapping[str, Any]) -> dict[str, Any]:
    buttons = content.get("buttons")
    if not isinstance(buttons, list) or not buttons:
        raise Unsendable("a buttons message without buttons")
    if len(buttons) > MAX_BUTTONS:  # the engine makes these a list first
        raise Unsendable(f"{len(buttons)} buttons; WhatsApp shows at most {MAX_BUTTONS}")
    action = {
        "buttons": [
            {"type": "reply", "reply": {"id": str(b["id"]), "title": str(b["title"])}}
            for b in buttons
        ]
    }
    return _interactive("button", content, action, MAX_BUTTONS_BODY)


def list_message(content: Mapping[str, Any]) -> dict[str, Any]:
    spec = content.get("list")
    if not isinstance(spec, Mapping) or not spec.get("sections"):
        raise Unsendable("a list message without sections")
    sections = []
    for section in spec["sections"]:
        rows = []
        for row in section["rows"]:
            shown = {"id": str(row["id"]), "title": str(row["title"])}
            if row.get("description"):
                shown["description"] = str(row["description"])
            rows.append(shown)
        out: dict[str, Any] = {"title": str(section["title"])} if section.get("title") else {}
        out["rows"] = rows
        sections.append(out)
    action = {"button": str(spec["button"]), "sections": sections}
    return _interactive("list", content, action, MAX_BODY)


def media_message(content: Mapping[str, Any]) -> dict[str, Any]:
    """Media by link. A caption shows the message's text and the media's caption
    (both, when both were written); audio and stickers show none."""
    media = content.get("media")
    if not isinstance(media, Mapping) or media.get("kind") not in MEDIA_KINDS:
        raise Unsendable("a media message without a known kind (image, video, audio...)")
    kind = str(media["kind"])
    url = str(media.get("url") or "")
    if not url.startswith(("https://", "http://")):
        raise Unsendable(f"media url {url[:80]!r} is not an http(s) URL")
    shown: dict[str, Any] = {"link": url}
    if kind in CAPTIONED:
        said = [str(p) for p in (content.get("text"), media.get("caption")) if p]
        if said:
            shown["caption"] = cut("\n\n".join(said), MAX_CAPTION)
    if kind == "document" and media.get("filename"):
        shown["filename"] = str(media["filename"])
    return {"type": kind, kind: shown}


def location_message(content: Mapping[str, Any]) -> dict[str, Any]:
    place = content.get("location")
    if not isinstance(place, Mapping):
        raise Unsendable("a location message without its place")
    shown: dict[str, Any] = {
        "latitude": float(place["latitude"]),
        "longitude": float(place["longitude"]),
    }
    for name in ("name", "address"):
        if place.get(name):
            shown[name] = str(place[name])
    return {"type": "location", "location": shown}


def template_message(template: Mapping[str, Any]) -> dict[str, Any]:
    """An approved template: ``{"name", "language", "components"}`` as trilha carries
    it, ``language`` a code such as ``pt_BR`` (``pt-BR`` is written Meta's way)."""
    name = template.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_TEMPLATE_NAME:
        raise Unsendable("a template needs its name (at most 512 characters)")
    language = template.get("language")
    if isinstance(language, Mapping):  # already Meta's {"code": ...}
        language = language.get("code")
    if not isinstance(language, str) or not _TEMPLATE_LANGUAGE.match(language):
        raise Unsendable(f"template {name!r}: language must be a code such as 'pt_BR'")
    shown: dict[str, Any] = {"name": name, "language": {"code": language.replace("-", "_")}}
    components = template.get("components") or []
    if not isinstance(components, list) or len(components) > MAX_COMPONENTS:
        raise Unsendable(f"template {name!r}: components must be a list of at most 20")
    if not all(isinstance(c, Mapping) for c in components):
        raise Unsendable(f"template {name!r}: each component is an object")
    if components:
        shown["components"] = [dict(c) for c in components]
    return {"type": "template", "template": shown}


def template_alternative(content: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The template a message carries to be sent instead when the contact's 24-hour
    window is closed (``None``: it has none, or it is a template already)."""
    if content is None or content.get("type") == "template":
        return None
    template = content.get("template")
    return template if isinstance(template, Mapping) else None
