"""What Meta's webhook brings, read without I/O: the signature check and the parse.

Meta POSTs ``{"object": "whatsapp_business_account", "entry": [{"id": WABA_ID,
"changes": [{"field": "messages", "value": {...}}]}]}`` signed with the app's secret
(``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``, checked by
:func:`signature_ok` in constant time). Each change's ``value`` names the business
number it is about (``metadata.phone_number_id``) and carries the senders' profiles
(``contacts[]``: ``profile.name``, ``wa_id``), the contacts' ``messages[]`` and the
``statuses[]`` of what the business sent. :func:`parse_webhook` turns a body into its
updates, in the order the body lists them:

* :class:`MessageUpdate`, a contact's message as trilha's inbound content
  (:class:`trilha.inbound.InboundContent` wire fields): ``text``; an interactive
  ``button_reply`` / ``list_reply`` and a template's quick-reply ``button`` become
  ``button`` / ``list`` replies (``replyId``: the button's id or payload, ``text``: its
  title); ``image``, ``audio``, ``video``, ``document`` and ``sticker`` become ``media``
  whose URL is looked up by the caller (:attr:`MessageUpdate.media_id`, Graph API
  ``GET /{media-id}``); ``location`` a place; ``contacts`` (shared contact cards) a
  text, one readable card per contact, with Meta's cards kept in the payload.
  The payload keeps what else the channel said (``profileName``, ``replyTo``, ...).
* :class:`StatusUpdate`, a delivery report on a message the business sent: its
  status, its time, ``biz_opaque_callback_data`` (trilha puts the outbound message's
  idempotency key there) and, for ``failed``, Meta's errors as ``"CODE: title
  (details)"``.
* :class:`Ignored`, anything else, with the level it is worth a log line at:
  reactions (DEBUG: a contact's emoji on a message is no reply); ``unsupported``
  messages (a type the Cloud API does not deliver: polls, view-once media), ``system``
  notices (a contact changed number), ``order``, ``request_welcome``, WhatsApp Flows
  answers and other types (INFO); the value's own ``errors`` (WARN); changes of other
  fields than ``messages`` (DEBUG); malformed parts (WARN).

A body holds at most :data:`MAX_UPDATES` messages and statuses and
:data:`MAX_CHANGES` changes (:class:`WebhookRefused` beyond). Meta's own strings are
not trusted for their size: the inbound model bounds every field when the caller builds
the message, so one that fails it is refused alone.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from trilha.inbound import MAX_TEXT

__all__ = [
    "MAX_CHANGES",
    "MAX_UPDATES",
    "WEBHOOK_CHANNEL",
    "Ignored",
    "MessageUpdate",
    "StatusUpdate",
    "Update",
    "WebhookRefused",
    "conversation_id",
    "conversation_keys",
    "error_text",
    "parse_webhook",
    "signature_ok",
]

#: the store's name for Meta's webhook bodies (``channel_webhooks.channel``)
WEBHOOK_CHANNEL: Final = "whatsapp"
#: messages and statuses one body may carry (Meta batches far fewer)
MAX_UPDATES: Final = 1_000
#: entries' changes one body may carry
MAX_CHANGES: Final = 1_000
#: the error codes read from one status (Meta sends one or two)
MAX_CODES: Final = 10
#: the longest failure text kept from a status's errors, as a receipt's error is bounded
MAX_ERROR: Final = 1_000
#: a contact's id as Meta gives it: the phone number's digits (``wa_id``), or a
#: business-scoped id such as ``US.13491208655302741918``
WA_ID: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,127}")
#: a business number's id, as ``[[channel.whatsapp.numbers]]`` names it
PHONE_NUMBER_ID: Final = re.compile(r"[0-9]{1,32}")
#: Meta's message types that carry a file
MEDIA_TYPES: Final = ("image", "audio", "video", "document", "sticker")
#: statuses trilha records as delivery receipts (others, such as ``deleted``, are not)
RECEIPTS: Final = ("sent", "delivered", "read", "failed")

LogLevel = Literal["debug", "info", "warning"]


class WebhookRefused(ValueError):
    """A body that is not one Meta sends (``too_large``: over the bounds): refused whole."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class MessageUpdate:
    """A contact's message to a business number."""

    phone_number_id: str
    #: the contact (``wa_id``)
    wa_id: str
    #: Meta's message id, trilha's ``messageId``: a repeat is a duplicate
    wamid: str
    #: Meta's message type (``text``, ``interactive``, ``image``...)
    kind: str
    #: trilha's inbound content, wire names (``type``, ``text``, ``replyId``, ``media``,
    #: ``location``); a media message's ``media`` has no ``url`` until it is looked up
    content: dict[str, Any]
    payload: dict[str, Any]
    #: the file's id to look up (media messages only)
    media_id: str | None = None

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.wa_id)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """Meta's report on a message the business sent."""

    phone_number_id: str
    #: the contact the message went to
    recipient_id: str
    wamid: str
    #: Meta's status: ``sent``, ``delivered``, ``read``, ``failed`` (or another)
    status: str
    #: when, unix seconds (``None``: Meta gave no readable time)
    at: float | None
    #: ``biz_opaque_callback_data``: the outbound message's idempotency key
    key: str | None
    #: ``failed``: ``"CODE: title (details)"`` for each error, ``; ``-separated
    error: str | None = None
    #: ``failed``: the code of each of Meta's errors (``131047``: the window was closed)
    codes: tuple[int, ...] = ()

    @property
    def conversation_id(self) -> str:
        return conversation_id(self.phone_number_id, self.recipient_id)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A part of the body that becomes nothing in trilha, and why."""

    #: what it was: ``reaction``, ``unsupported``, ``system``, ``errors``,
    #: ``field:<name>``, ``malformed``...
    what: str
    level: LogLevel
    phone_number_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


Update = MessageUpdate | StatusUpdate | Ignored


def conversation_id(phone_number_id: str, wa_id: str) -> str:
    """A WhatsApp conversation's id in trilha: the business number and the contact."""
    return f"wa:{phone_number_id}:{wa_id}"


def conversation_keys(updates: list[Update]) -> list[str]:
    """The conversations ``updates`` speak of, as the store orders bodies by them
    (``phone_number_id:wa_id`` of each message, and of each status's recipient; an
    ignored update orders nothing), without repeats, in order."""
    keys: dict[str, None] = {}
    for update in updates:
        if isinstance(update, MessageUpdate):
            keys[f"{update.phone_number_id}:{update.wa_id}"] = None
        elif isinstance(update, StatusUpdate):
            keys[f"{update.phone_number_id}:{update.recipient_id}"] = None
    return list(keys)


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (``X-Hub-Signature-256``) is ``sha256=`` and the hex
    HMAC-SHA256 of ``body`` with ``app_secret``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8"))


def parse_webhook(payload: Any) -> list[Update]:
    """The updates of one webhook body (parsed JSON), in the order it lists them;
    :class:`WebhookRefused` for a body that is not a JSON object or is over the bounds."""
    if not isinstance(payload, Mapping):
        raise WebhookRefused("the body must be a JSON object (Meta's webhook notification)")
    if payload.get("object") != "whatsapp_business_account":
        return [Ignored("object", "info", details={"object": _short(payload.get("object"))})]
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return [Ignored("malformed", "warning", details={"reason": "no entry list"})]
    changes = [
        change
        for entry in entries
        if isinstance(entry, Mapping) and isinstance(entry.get("changes"), list)
        for change in entry["changes"]
    ]
    if len(changes) > MAX_CHANGES:
        raise WebhookRefused(
            f"{len(changes)} changes in one body: at most {MAX_CHANGES}", too_large=True
        )
    counted = sum(_count(change) for change in changes)
    if counted > MAX_UPDATES:
        raise WebhookRefused(
            f"{counted} messages and statuses in one body: at most {MAX_UPDATES}", too_large=True
        )
    updates: list[Update] = []
    for change in changes:
        updates.extend(_change(change))
    return updates


def _count(change: Any) -> int:
    value = change.get("value") if isinstance(change, Mapping) else None
    if not isinstance(value, Mapping):
        return 0
    return sum(
        len(value[name]) for name in ("messages", "statuses") if isinstance(value.get(name), list)
    )


def _change(change: Any) -> list[Update]:
    if not isinstance(change, Mapping):
        return [Ignored("malformed", "warning", details={"reason": "a change is not an object"})]
    name = change.get("field")
    value = change.get("value")
    if name != "messages":
        return [Ignored(f"field:{_short(name)}", "debug")]
    if not isinstance(value, Mapping):
        return [Ignored("malformed", "warning", details={"reason": "a change has no value"})]
    metadata = value.get("metadata")
    number = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
    if not isinstance(number, str) or not PHONE_NUMBER_ID.fullmatch(number):
        return [
            Ignored(
                "malformed",
                "warning",
                details={"reason": "no metadata.phone_number_id", "given": _short(number)},
            )
        ]
    out: list[Update] = []
    errors = value.get("errors")
    if isinstance(errors, list) and errors:
        out.append(Ignored("errors", "warning", number, {"errors": error_text(errors)}))
    profiles = _profiles(value.get("contacts"))
    for message in _items(value.get("messages")):
        out.append(_message(number, message, profiles))
    for status in _items(value.get("statuses")):
        out.append(_status(number, status))
    return out


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _profiles(contacts: Any) -> list[tuple[str, str | None]]:
    """``(wa_id, profile name)`` of the value's ``contacts[]``."""
    found = []
    for contact in _items(contacts):
        if not isinstance(contact, Mapping) or not isinstance(contact.get("wa_id"), str):
            continue
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, Mapping) else None
        found.append((contact["wa_id"], name if isinstance(name, str) else None))
    return found


def _sender(message: Mapping[str, Any], profiles: list[tuple[str, str | None]]) -> tuple[Any, Any]:
    """The contact's ``wa_id`` and profile name: the message's ``from`` (what Meta says
    sent it), named by its ``contacts[]`` entry, else by the only entry (Meta sends one
    per sender); without a ``from``, the only entry's ``wa_id``."""
    sender = message.get("from")
    for wa_id, name in profiles:
        if wa_id == sender:
            return wa_id, name
    if isinstance(sender, str) and sender:
        return sender, profiles[0][1] if len(profiles) == 1 else None
    if len(profiles) == 1:
        return profiles[0]
    return sender, None


def _message(
    number: str, message: Any, profiles: list[tuple[str, str | None]]
) -> MessageUpdate | Ignored:
    if not isinstance(message, Mapping):
        return Ignored("malformed", "warning", number, {"reason": "a message is not an object"})
    wamid = message.get("id")
    kind = message.get("type")
    wa_id, name = _sender(message, profiles)
    if not isinstance(wamid, str) or not wamid or not isinstance(kind, str):
        return Ignored("malformed", "warning", number, {"reason": "a message has no id or type"})
    if not isinstance(wa_id, str) or not WA_ID.fullmatch(wa_id):
        return Ignored(
            "malformed",
            "warning",
            number,
            {"reason": "a message has no sender (from, wa_id)", "messageId": _short(wamid)},
        )
    payload: dict[str, Any] = {"channel": "whatsapp", "phoneNumberId": number, "type": kind}
    if name is not None:
        payload["profileName"] = name
    timestamp = _time(message.get("timestamp"))
    if timestamp is not None:
        payload["timestamp"] = timestamp
    context = message.get("context")
    if isinstance(context, Mapping) and isinstance(context.get("id"), str):
        payload["replyTo"] = context["id"]
    if isinstance(message.get("referral"), Mapping):
        payload["referral"] = message["referral"]  # a Click to WhatsApp ad's
    body = message.get(kind)
    read: tuple[dict[str, Any], str | None] | Ignored
    if kind == "contacts":  # its list of cards is where other types carry their object
        read = _contacts(body, payload)
    elif kind == "unsupported":  # Meta says why in the message's own errors
        read = Ignored("unsupported", "info", details={"errors": error_text(message.get("errors"))})
    else:
        read = _content(kind, body if isinstance(body, Mapping) else {}, payload)
    if isinstance(read, Ignored):
        return Ignored(read.what, read.level, number, {"messageId": wamid, **read.details})
    content, media_id = read
    return MessageUpdate(number, wa_id, wamid, kind, content, payload, media_id)


def _content(
    kind: str, body: Mapping[str, Any], payload: dict[str, Any]
) -> tuple[dict[str, Any], str | None] | Ignored:
    """trilha's content for a message of Meta's ``kind`` (and the media id to look up),
    extras added to ``payload``; or why it becomes nothing."""
    if kind == "text":
        text = body.get("body")
        return _or_malformed(isinstance(text, str), {"type": "text", "text": text})
    if kind == "interactive":
        return _interactive(body, payload)
    if kind == "button":  # a template's quick-reply button
        text, value = body.get("text"), body.get("payload")
        reply = value if isinstance(value, str) and value else text
        ok = isinstance(reply, str) and bool(reply)
        return _or_malformed(ok, _without_none({"type": "button", "replyId": reply, "text": text}))
    if kind in MEDIA_TYPES:
        media_id = body.get("id")
        if not isinstance(media_id, str) or not media_id:
            return Ignored("malformed", "warning", details={"reason": f"{kind} without an id"})
        media = {
            "kind": kind,
            "mimeType": body.get("mime_type"),
            "caption": body.get("caption"),
            "filename": body.get("filename"),
        }
        payload["mediaId"] = media_id
        for extra, name in (("sha256", "sha256"), ("voice", "voice"), ("animated", "animated")):
            if body.get(extra) is not None:
                payload[name] = body[extra]
        return {"type": "media", "media": _without_none(media)}, media_id
    if kind == "location":
        place = {
            "latitude": body.get("latitude"),
            "longitude": body.get("longitude"),
            "name": body.get("name"),
            "address": body.get("address"),
        }
        if isinstance(body.get("url"), str):
            payload["url"] = body["url"]
        return {"type": "location", "location": _without_none(place)}, None
    if kind == "reaction":
        return Ignored("reaction", "debug", details={"emoji": _short(body.get("emoji"))})
    if kind == "system":  # a contact changed number: the new one is a new conversation
        return Ignored("system", "info", details={"systemType": _short(body.get("type"))})
    return Ignored(_short(kind) or "unknown", "info")


def _or_malformed(ok: bool, content: dict[str, Any]) -> tuple[dict[str, Any], None] | Ignored:
    if ok:
        return content, None
    return Ignored("malformed", "warning", details={"reason": f"a {content['type']} without text"})


def _interactive(
    body: Mapping[str, Any], payload: dict[str, Any]
) -> tuple[dict[str, Any], None] | Ignored:
    kind = body.get("type")
    if kind not in ("button_reply", "list_reply"):
        # nfm_reply (a WhatsApp Flow's answer) and whatever Meta adds
        return Ignored(f"interactive:{_short(kind)}", "info")
    reply = body.get(kind)
    reply = reply if isinstance(reply, Mapping) else {}
    reply_id, title = reply.get("id"), reply.get("title")
    if isinstance(reply.get("description"), str):
        payload["description"] = reply["description"]
    trilha_type = "button" if kind == "button_reply" else "list"
    content = _without_none({"type": trilha_type, "replyId": reply_id, "text": title})
    return _or_malformed(isinstance(reply_id, str) and bool(reply_id), content)


def _contacts(cards: Any, payload: dict[str, Any]) -> tuple[dict[str, Any], None] | Ignored:
    """Shared contact cards: a text with one readable card per contact (a question of
    kind text saves it, a person reads it), Meta's cards kept as ``payload.contacts``."""
    if not isinstance(cards, list) or not cards:
        return Ignored("malformed", "warning", details={"reason": "contacts without cards"})
    payload["contacts"] = cards
    text = "\n\n".join(card_text(card) for card in cards if isinstance(card, Mapping))
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return {"type": "text", "text": text or "[contact]"}, None


def card_text(card: Mapping[str, Any]) -> str:
    """One shared contact as lines a person reads: the name, then each phone (with its
    type), e-mail, organisation and address."""
    lines: list[str] = []
    name = card.get("name")
    if isinstance(name, Mapping):
        formatted = name.get("formatted_name")
        parts = [name.get(p) for p in ("first_name", "middle_name", "last_name")]
        joined = " ".join(p for p in parts if isinstance(p, str) and p)
        shown = formatted if isinstance(formatted, str) and formatted else joined
        if shown:
            lines.append(shown)
    for phone in _items(card.get("phones")):
        if isinstance(phone, Mapping) and isinstance(phone.get("phone"), str):
            kind = phone.get("type")
            lines.append(phone["phone"] + (f" ({kind})" if isinstance(kind, str) else ""))
    for email in _items(card.get("emails")):
        if isinstance(email, Mapping) and isinstance(email.get("email"), str):
            lines.append(email["email"])
    org = card.get("org")
    if isinstance(org, Mapping):
        company = ", ".join(
            org[p] for p in ("company", "department", "title") if isinstance(org.get(p), str)
        )
        if company:
            lines.append(company)
    for address in _items(card.get("addresses")):
        if isinstance(address, Mapping):
            where = ", ".join(
                address[p]
                for p in ("street", "city", "state", "zip", "country")
                if isinstance(address.get(p), str) and address[p]
            )
            if where:
                lines.append(where)
    for url in _items(card.get("urls")):
        if isinstance(url, Mapping) and isinstance(url.get("url"), str):
            lines.append(url["url"])
    return "\n".join(lines) or "[contact]"


def _status(number: str, status: Any) -> StatusUpdate | Ignored:
    if not isinstance(status, Mapping):
        return Ignored("malformed", "warning", number, {"reason": "a status is not an object"})
    wamid, value = status.get("id"), status.get("status")
    recipient = status.get("recipient_id")
    if not isinstance(wamid, str) or not isinstance(value, str):
        return Ignored("malformed", "warning", number, {"reason": "a status has no id or status"})
    if not isinstance(recipient, str) or not WA_ID.fullmatch(recipient):
        return Ignored("malformed", "warning", number, {"reason": "a status has no recipient_id"})
    key = status.get("biz_opaque_callback_data")
    errors = status.get("errors")
    return StatusUpdate(
        number,
        recipient,
        wamid,
        value,
        _time(status.get("timestamp")),
        key if isinstance(key, str) and key else None,
        error_text(errors) if isinstance(errors, list) and errors else None,
        error_codes(errors),
    )


def error_codes(errors: Any) -> tuple[int, ...]:
    """The integer ``code`` of each of Meta's ``errors[]`` (others left out)."""
    return tuple(
        e["code"]
        for e in _items(errors)[:MAX_CODES]
        if isinstance(e, Mapping) and type(e.get("code")) is int
    )


def error_text(errors: Any) -> str | None:
    """Meta's ``errors[]`` as one line: ``"CODE: title (details)"`` for each, joined by
    ``; `` and bounded to :data:`MAX_ERROR` characters."""
    said = []
    for error in _items(errors):
        if not isinstance(error, Mapping):
            continue
        code = error.get("code")
        title = error.get("title") or error.get("message")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, Mapping) else None
        text = f"{code}: {title}" if title else str(code)
        if isinstance(details, str) and details and details != title:
            text += f" ({details})"
        said.append(text)
    if not said:
        return None
    joined = "; ".join(said)
    return joined if len(joined) <= MAX_ERROR else joined[: MAX_ERROR - 1] + "…"


def _time(value: Any) -> float | None:
    """Meta's ``timestamp`` (unix seconds, as a string) as a number; ``None`` if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _short(value: Any, limit: int = 80) -> str | None:
    """A value of Meta's quoted in a log line: a string, at most ``limit`` characters."""
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
