"""Reading Meta's webhook: the signature check and the parse of every message type,
statuses (with their errors), several entries and changes, other fields, malformed
parts and the bounds, with bodies shaped as Meta's reference shows them."""

from __future__ import annotations

import json
from typing import Any

import pytest

import whatsapp_webhooks as wa  # tests/ is on sys.path (rootdir mode)
from trilha.api.routes.messages import InboundMessageIn
from trilha.channels.whatsapp.inbound import (
    MAX_UPDATES,
    Ignored,
    MessageUpdate,
    StatusUpdate,
    WebhookRefused,
    card_text,
    error_text,
    parse_webhook,
    signature_ok,
)

SECRET = "app-secret-1"


def one(*messages: dict[str, Any]) -> list[Any]:
    return parse_webhook(wa.notification(wa.value(messages=list(messages))))


def test_the_signature_is_the_bodys_hmac_with_the_app_secret() -> None:
    """Good: the hex HMAC-SHA256 of the raw bytes; anything else, refused."""
    raw = wa.encode(wa.notification(wa.value(messages=[wa.text("wamid.1", "oi")])))
    good = wa.signature(SECRET, raw)
    assert signature_ok(SECRET, raw, good)
    assert signature_ok(SECRET, raw, good.upper().replace("SHA256=", "sha256="))
    assert not signature_ok(SECRET, raw + b" ", good)  # one byte more
    assert not signature_ok("another-secret", raw, good)
    assert not signature_ok(SECRET, raw, None)
    assert not signature_ok(SECRET, raw, "")
    assert not signature_ok(SECRET, raw, good.replace("sha256=", "sha1="))
    assert not signature_ok(SECRET, raw, "sha256=")
    assert not signature_ok(SECRET, raw, "sha256=é" + good[8:])  # not ASCII: no error


def test_a_text_and_its_sender() -> None:
    """A text becomes trilha's text from the contact's wa_id, its profile name and
    time in the payload, in conversation wa:{number}:{wa_id}."""
    (update,) = one(wa.text("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEyNDdFNzYwNjk2RgA=", "oi"))
    assert isinstance(update, MessageUpdate)
    assert (update.phone_number_id, update.wa_id, update.kind) == (
        wa.PHONE_NUMBER_ID,
        wa.WA_ID,
        "text",
    )
    assert update.wamid.startswith("wamid.HBgL")
    assert update.content == {"type": "text", "text": "oi"}
    assert update.conversation_id == f"wa:{wa.PHONE_NUMBER_ID}:{wa.WA_ID}"
    assert update.payload == {
        "channel": "whatsapp",
        "phoneNumberId": wa.PHONE_NUMBER_ID,
        "type": "text",
        "profileName": wa.PROFILE_NAME,
        "timestamp": 1739321024.0,
    }
    assert update.media_id is None


def test_the_sender_is_from_even_when_the_profile_names_another() -> None:
    """``from`` is what Meta says sent the message; the only ``contacts[]`` entry still
    gives the name when its wa_id is written otherwise (a number's ninth digit)."""
    body = wa.notification(
        wa.value(messages=[wa.text("wamid.9", "oi", wa_id="5511987654321")], wa_id="551187654321")
    )
    (update,) = parse_webhook(body)
    assert isinstance(update, MessageUpdate)
    assert (update.wa_id, update.payload["profileName"]) == ("5511987654321", wa.PROFILE_NAME)


def test_replies_to_buttons_lists_and_templates() -> None:
    """button_reply and a template's quick reply become `button`, list_reply `list`:
    the id (or payload) as replyId, the title as text; what they answered in replyTo."""
    button, row, quick = one(
        wa.button_reply("wamid.b", "yes-button", "Sim"),
        wa.list_reply("wamid.l", "priority_express", "Priority Mail Express"),
        wa.quick_reply("wamid.q", "approve_67_schedule", "Approve"),
    )
    assert isinstance(button, MessageUpdate) and isinstance(row, MessageUpdate)
    assert isinstance(quick, MessageUpdate)
    assert button.content == {"type": "button", "replyId": "yes-button", "text": "Sim"}
    assert row.content == {
        "type": "list",
        "replyId": "priority_express",
        "text": "Priority Mail Express",
    }
    assert row.payload["description"] == "Next Day to 2 Days"
    assert quick.content == {"type": "button", "replyId": "approve_67_schedule", "text": "Approve"}
    assert {u.payload["replyTo"] for u in (button, row, quick)} == {
        "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQ="
    }
    for update in (button, row, quick):  # the inbound model takes each as it is
        InboundMessageIn.model_validate(
            {**update.content, "messageId": update.wamid, "contactId": update.wa_id}
        )


def test_every_media_type_names_the_file_to_look_up() -> None:
    """image, audio, video, document and sticker become `media` of that kind with
    Meta's mime type, caption and file name; the URL comes from the media id."""
    updates = one(
        wa.image("wamid.i", "1001", caption="minha receita"),
        wa.audio("wamid.a", "1002"),
        wa.video("wamid.v", "1003"),
        wa.document("wamid.d", "1004"),
        wa.sticker("wamid.s", "1005"),
    )
    assert all(isinstance(u, MessageUpdate) for u in updates)
    media = [u.content["media"] for u in updates if isinstance(u, MessageUpdate)]
    assert [m["kind"] for m in media] == ["image", "audio", "video", "document", "sticker"]
    assert [u.media_id for u in updates if isinstance(u, MessageUpdate)] == [
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
    ]
    assert media[0] == {"kind": "image", "mimeType": "image/jpeg", "caption": "minha receita"}
    assert media[1] == {"kind": "audio", "mimeType": "audio/ogg; codecs=opus"}
    assert media[3] == {
        "kind": "document",
        "mimeType": "application/pdf",
        "caption": "Lucky Shrub Invoice",
        "filename": "receipt.pdf",
    }
    assert all("url" not in m for m in media)
    audio, sticker = updates[1], updates[4]
    assert isinstance(audio, MessageUpdate) and audio.payload["voice"] is True
    assert isinstance(sticker, MessageUpdate) and sticker.payload["animated"] is False
    assert audio.payload["mediaId"] == "1002"
    for update in updates:  # with the URL the lookup gives, the inbound model takes it
        assert isinstance(update, MessageUpdate)
        media_in = {**update.content["media"], "url": "https://lookaside.example/1"}
        InboundMessageIn.model_validate(
            {"type": "media", "media": media_in, "messageId": update.wamid, "contactId": "1"}
        )


def test_a_location_and_a_contact_card() -> None:
    """A location becomes trilha's place (its url in the payload); shared contacts a
    readable card, Meta's cards kept in the payload."""
    place, card = one(wa.location("wamid.loc"), wa.contacts("wamid.c"))
    assert isinstance(place, MessageUpdate) and isinstance(card, MessageUpdate)
    assert place.content == {
        "type": "location",
        "location": {
            "latitude": 37.483253479003906,
            "longitude": -122.14960479736328,
            "name": "Philz Coffee",
            "address": "1 Hacker Way, Menlo Park, CA 94025",
        },
    }
    assert place.payload["url"] == "https://www.philzcoffee.com/"
    assert card.content == {
        "type": "text",
        "text": "Barbara J. Johnson\n+1 (940) 555-1234 (WORK)\nbjohnson@luckyshrub.com\n"
        "Lucky Shrub, Legal, Lead Counsel\n1 Hacker Way, Menlo Park, CA, 94025, United States\n"
        "https://www.luckyshrub.com",
    }
    assert card.payload["contacts"][0]["phones"][0]["wa_id"] == "19405551234"
    assert card_text({}) == "[contact]"
    assert card_text({"name": {"first_name": "Ana", "last_name": "Souza"}}) == "Ana Souza"


def test_what_becomes_nothing_says_so_at_its_level() -> None:
    """A reaction (DEBUG), an unsupported message with Meta's reason, a number change
    and an unknown type (INFO), an interactive answer other than a reply (INFO)."""
    reaction, unsupported, system, order, flow = one(
        wa.reaction("wamid.r", "wamid.sent"),
        wa.unsupported("wamid.u"),
        wa.system("wamid.sys"),
        wa.message("order", "wamid.o", {"catalog_id": "1", "product_items": []}),
        wa.message("interactive", "wamid.f", {"type": "nfm_reply", "nfm_reply": {}}),
    )
    assert isinstance(reaction, Ignored) and (reaction.what, reaction.level) == (
        "reaction",
        "debug",
    )
    assert reaction.details["messageId"] == "wamid.r"
    assert isinstance(unsupported, Ignored) and unsupported.level == "info"
    assert unsupported.details["errors"] == (
        "131051: Message type unknown (Message type is currently not supported.)"
    )
    assert isinstance(system, Ignored) and system.details["systemType"] == "user_changed_number"
    assert isinstance(order, Ignored) and (order.what, order.level) == ("order", "info")
    assert isinstance(flow, Ignored) and flow.what == "interactive:nfm_reply"
    assert {u.phone_number_id for u in (reaction, unsupported, system, order, flow)} == {
        wa.PHONE_NUMBER_ID
    }


def test_statuses_with_their_key_and_errors() -> None:
    """Each status names its message, recipient, time and biz_opaque_callback_data; a
    failed one carries "CODE: title (details)"; one without the key has none."""
    body = wa.notification(
        wa.value(
            statuses=[
                wa.status("wamid.out1", "sent", key="ex-1:3:0"),
                wa.status("wamid.out1", "failed", key="ex-1:3:0", errors=wa.undeliverable()),
                wa.status("wamid.out2", "read", key=None),
            ]
        )
    )
    sent, failed, read = parse_webhook(body)
    assert sent == StatusUpdate(
        wa.PHONE_NUMBER_ID, wa.WA_ID, "wamid.out1", "sent", 1739321100.0, "ex-1:3:0", None
    )
    assert isinstance(failed, StatusUpdate)
    assert failed.error == "131026: Message undeliverable (Message Undeliverable.)"
    assert failed.conversation_id == f"wa:{wa.PHONE_NUMBER_ID}:{wa.WA_ID}"
    assert isinstance(read, StatusUpdate) and read.key is None
    assert error_text([{"code": 131047, "title": "Re-engagement message"}]) == (
        "131047: Re-engagement message"
    )
    assert error_text([{"code": 1, "title": "x" * 2_000}]) is not None
    assert len(error_text([{"code": 1, "title": "x" * 2_000}]) or "") == 1_000


def test_several_entries_and_changes_keep_their_order_and_numbers() -> None:
    """Updates come in the body's order across entries and changes, each with its
    own number; other fields and a value's own errors are said, not dropped silently."""
    body = wa.notification(
        wa.value(messages=[wa.text("wamid.1", "um")]),
        wa.value(
            messages=[wa.text("wamid.2", "dois", wa_id="5511987654321")],
            phone_number_id="2000",
            wa_id="5511987654321",
            name="Ana",
        ),
    )
    body["entry"].append(
        {
            "id": "999",
            "changes": [
                {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                {
                    "field": "messages",
                    "value": {
                        **wa.value(statuses=[wa.status("wamid.o", "delivered", key="k")]),
                        "errors": [{"code": 130429, "title": "Rate limit hit"}],
                    },
                },
            ],
        }
    )
    updates = parse_webhook(body)
    kinds = [type(u).__name__ for u in updates]
    assert kinds == ["MessageUpdate", "MessageUpdate", "Ignored", "Ignored", "StatusUpdate"]
    first, second, field, errors, delivered = updates
    assert isinstance(first, MessageUpdate) and first.wamid == "wamid.1"
    assert isinstance(second, MessageUpdate)
    assert (second.phone_number_id, second.wa_id, second.payload["profileName"]) == (
        "2000",
        "5511987654321",
        "Ana",
    )
    assert isinstance(field, Ignored) and (field.what, field.level) == (
        "field:account_update",
        "debug",
    )
    assert isinstance(errors, Ignored) and errors.level == "warning"
    assert errors.details["errors"] == "130429: Rate limit hit"
    assert isinstance(delivered, StatusUpdate) and delivered.status == "delivered"


def test_an_unknown_number_is_read_like_any_other() -> None:
    """The parse knows no configuration: a number nobody configured is still read (the
    processor ignores it); a malformed number is not a number at all."""
    (update,) = parse_webhook(
        wa.notification(wa.value(messages=[wa.text("wamid.x", "oi")], phone_number_id="777"))
    )
    assert isinstance(update, MessageUpdate) and update.phone_number_id == "777"
    bad = wa.notification(wa.value(messages=[wa.text("wamid.x", "oi")], phone_number_id="../1"))
    (refused,) = parse_webhook(bad)
    assert isinstance(refused, Ignored) and refused.what == "malformed"


def test_malformed_parts_are_ignored_one_by_one() -> None:
    """A message with no id, a sender that is not an id, a text without a body, media
    without an id: each is ignored (WARN) and the rest is read."""
    updates = one(
        {"from": wa.WA_ID, "type": "text", "text": {"body": "no id"}},
        wa.text("wamid.ok", "fine"),
        wa.message("text", "wamid.nobody", {}),
        wa.message("image", "wamid.noid", {"mime_type": "image/jpeg"}),
    )
    assert [type(u).__name__ for u in updates] == ["Ignored", "MessageUpdate", "Ignored", "Ignored"]
    assert all(u.level == "warning" for u in updates if isinstance(u, Ignored))
    weird = wa.notification(wa.value(messages=[wa.text("wamid.w", "x")]))
    weird["entry"][0]["changes"][0]["value"]["contacts"] = [{"wa_id": "a b"}]
    weird["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "a b"
    (sender,) = parse_webhook(weird)
    assert isinstance(sender, Ignored) and "sender" in sender.details["reason"]
    assert parse_webhook({"object": "page", "entry": []})[0].what == "object"


def test_the_bounds_refuse_the_whole_body() -> None:
    """Not a JSON object, or over the messages-and-statuses bound: refused whole,
    saying the bound."""
    with pytest.raises(WebhookRefused, match="JSON object") as not_object:
        parse_webhook([1, 2])
    assert not not_object.value.too_large
    many = [wa.text(f"wamid.{i}", "x") for i in range(MAX_UPDATES + 1)]
    with pytest.raises(WebhookRefused, match="at most 1000") as over:
        parse_webhook(wa.notification(wa.value(messages=many)))
    assert over.value.too_large
    assert len(parse_webhook(wa.notification(wa.value(messages=many[:MAX_UPDATES])))) == 1_000


def test_what_meta_documents_round_trips_through_json() -> None:
    """The bytes of a documented body parse as the dict does (no float or key drift)."""
    body = wa.notification(wa.value(messages=[wa.location("wamid.loc")]))
    assert parse_webhook(json.loads(wa.encode(body))) == parse_webhook(body)
