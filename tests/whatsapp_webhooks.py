"""Meta's webhook notifications for the WhatsApp channel's tests, in the shapes Meta's
reference shows (developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components,
.../webhooks/payload-examples, and the per-type references under
.../whatsapp/webhooks/reference/messages/): the envelope, one builder per message type
and for statuses, and the signature Meta puts on a body.

Every builder returns exactly the JSON Meta sends, with the documented example values
unless a test gives its own."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from trilha.channels.whatsapp.inbound import conversation_keys, parse_webhook

#: the documented examples' business account and number
WABA_ID = "102290129340398"
DISPLAY_NUMBER = "15550783881"
PHONE_NUMBER_ID = "106540352242922"
#: the documented example contact
WA_ID = "16505551234"
PROFILE_NAME = "Sheena Nelson"


def notification(*values: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    """The envelope: one entry, one ``messages`` change per value."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": waba_id, "changes": [{"value": value, "field": "messages"} for value in values]}
        ],
    }


def value(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    wa_id: str = WA_ID,
    name: str = PROFILE_NAME,
) -> dict[str, Any]:
    """A change's ``value``: the number's metadata, the sender's profile with messages,
    and the messages or statuses."""
    out: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if messages is not None:
        out["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
        out["messages"] = messages
    if statuses is not None:
        out["statuses"] = statuses
    return out


def message(
    kind: str, wamid: str, body: Any, *, wa_id: str = WA_ID, timestamp: str = "1739321024"
) -> dict[str, Any]:
    return {"from": wa_id, "id": wamid, "timestamp": timestamp, "type": kind, kind: body}


def text(wamid: str, said: str, **kwargs: Any) -> dict[str, Any]:
    return message("text", wamid, {"body": said}, **kwargs)


def button_reply(wamid: str, button_id: str, title: str, **kwargs: Any) -> dict[str, Any]:
    out = message(
        "interactive",
        wamid,
        {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
        **kwargs,
    )
    out["context"] = {"from": DISPLAY_NUMBER, "id": "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQ="}
    return out


def list_reply(
    wamid: str, row_id: str, title: str, description: str = "Next Day to 2 Days", **kwargs: Any
) -> dict[str, Any]:
    out = message(
        "interactive",
        wamid,
        {
            "type": "list_reply",
            "list_reply": {"id": row_id, "title": title, "description": description},
        },
        **kwargs,
    )
    out["context"] = {"from": DISPLAY_NUMBER, "id": "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQ="}
    return out


def quick_reply(wamid: str, payload: str, said: str, **kwargs: Any) -> dict[str, Any]:
    """A template's quick-reply button (``type: button``)."""
    out = message("button", wamid, {"payload": payload, "text": said}, **kwargs)
    out["context"] = {"from": DISPLAY_NUMBER, "id": "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQ="}
    return out


def image(wamid: str, media_id: str, caption: str | None = None, **kwargs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mime_type": "image/jpeg",
        "sha256": "7xG5D+lVw4yOr3KlGGDjyqE0hQZ6NjoUuQ1Wk63ZmE8=",
        "id": media_id,
    }
    if caption is not None:
        body["caption"] = caption
    return message("image", wamid, body, **kwargs)


def audio(wamid: str, media_id: str, **kwargs: Any) -> dict[str, Any]:
    body = {
        "mime_type": "audio/ogg; codecs=opus",
        "sha256": "bjRWEv+bP9sZLpVrImdoRrN2dJydn6m2EJuB8pQFEKA=",
        "id": media_id,
        "voice": True,
    }
    return message("audio", wamid, body, **kwargs)


def video(wamid: str, media_id: str, caption: str = "Lucky Shrub", **kwargs: Any) -> dict[str, Any]:
    body = {
        "caption": caption,
        "mime_type": "video/mp4",
        "sha256": "m7MWX1UdwXGFGqX1fCkk+6HDqzsjNxXZwdGK9k6J3AQ=",
        "id": media_id,
    }
    return message("video", wamid, body, **kwargs)


def document(
    wamid: str, media_id: str, filename: str = "receipt.pdf", **kwargs: Any
) -> dict[str, Any]:
    body = {
        "caption": "Lucky Shrub Invoice",
        "filename": filename,
        "mime_type": "application/pdf",
        "sha256": "Ofq+KQ6dbXa0bFtvHf8yuYkLlI6EoMxWl9OoK8xV6kE=",
        "id": media_id,
    }
    return message("document", wamid, body, **kwargs)


def sticker(wamid: str, media_id: str, **kwargs: Any) -> dict[str, Any]:
    body = {
        "mime_type": "image/webp",
        "sha256": "BaFVOhEafZmCcdnD1ku2FH1eKB1tFtV07DrMG7oY5NM=",
        "id": media_id,
        "animated": False,
    }
    return message("sticker", wamid, body, **kwargs)


def location(wamid: str, **kwargs: Any) -> dict[str, Any]:
    body = {
        "address": "1 Hacker Way, Menlo Park, CA 94025",
        "latitude": 37.483253479003906,
        "longitude": -122.14960479736328,
        "name": "Philz Coffee",
        "url": "https://www.philzcoffee.com/",
    }
    return message("location", wamid, body, **kwargs)


def contacts(wamid: str, **kwargs: Any) -> dict[str, Any]:
    cards = [
        {
            "addresses": [
                {
                    "city": "Menlo Park",
                    "country": "United States",
                    "country_code": "us",
                    "state": "CA",
                    "street": "1 Hacker Way",
                    "type": "WORK",
                    "zip": "94025",
                }
            ],
            "birthday": "1999-01-23",
            "emails": [{"email": "bjohnson@luckyshrub.com", "type": "WORK"}],
            "name": {
                "formatted_name": "Barbara J. Johnson",
                "first_name": "Barbara",
                "last_name": "Johnson",
                "middle_name": "Joana",
            },
            "org": {"company": "Lucky Shrub", "department": "Legal", "title": "Lead Counsel"},
            "phones": [{"phone": "+1 (940) 555-1234", "wa_id": "19405551234", "type": "WORK"}],
            "urls": [{"url": "https://www.luckyshrub.com", "type": "WORK"}],
        }
    ]
    return message("contacts", wamid, cards, **kwargs)


def reaction(wamid: str, to: str, emoji: str = "\U0001f600", **kwargs: Any) -> dict[str, Any]:
    return message("reaction", wamid, {"message_id": to, "emoji": emoji}, **kwargs)


def unsupported(wamid: str, **kwargs: Any) -> dict[str, Any]:
    out = message("unsupported", wamid, {"type": "edit"}, **kwargs)
    out["errors"] = [
        {
            "code": 131051,
            "title": "Message type unknown",
            "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."},
        }
    ]
    return out


def system(wamid: str, new_wa_id: str = "16505550000", **kwargs: Any) -> dict[str, Any]:
    body = {
        "body": f"User {PROFILE_NAME} changed from {WA_ID} to {new_wa_id}",
        "wa_id": new_wa_id,
        "type": "user_changed_number",
    }
    return message("system", wamid, body, **kwargs)


def status(
    wamid: str,
    state: str,
    *,
    key: str | None,
    recipient: str = WA_ID,
    timestamp: str = "1739321100",
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A status of a message the business sent (``biz_opaque_callback_data``: ``key``)."""
    out: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": timestamp,
        "recipient_id": recipient,
    }
    if key is not None:
        out["biz_opaque_callback_data"] = key
    if state in ("sent", "delivered"):
        out["conversation"] = {
            "id": "4e8d2a7e0c4a1f2e9f8f8f0a1b2c3d4e",
            "origin": {"type": "service"},
        }
        out["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    if errors is not None:
        out["errors"] = errors
    return out


def undeliverable() -> list[dict[str, Any]]:
    """The ``errors`` of a ``failed`` status: 131026, as Meta documents it."""
    return [
        {
            "code": 131026,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }
    ]


def encode(body: dict[str, Any]) -> bytes:
    """The bytes Meta sends (compact JSON, as its notifications come)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def keys(body: dict[str, Any]) -> list[str]:
    """The conversations the route stores with ``body`` (they order it per contact)."""
    return conversation_keys(parse_webhook(body))


def signature(secret: str, raw: bytes) -> str:
    """``X-Hub-Signature-256`` for ``raw`` with the app secret."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
