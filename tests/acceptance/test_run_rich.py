"""Rich messages in the terminal: ``trilha run``, ``run --json``, ``send`` and ``show``.

The terminal shows text only, so a flow's buttons and list arrive as numbered options
(typing a number picks one; a number out of range is refused and asked again), media as
its caption and link, a place as its name, address and a map link. ``run --json`` and
``show --json`` carry each message's structured ``content`` beside its ``text``, on
both sides of the conversation, and ``show`` says what a contact's tap, photo or place
carried. Each runs as its own process; the interactive chat on a real terminal (a pty).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_clinic_terminal import Terminal

from conftest import Cli

pytestmark = pytest.mark.slow

MAP = "https://www.google.com/maps/search/?api=1&query=-23.561400%2C-46.655900"
FRONT = "https://media.example.com/front.jpg"
FLOW: dict[str, Any] = {
    "id": "rich_terminal",
    "start": "menu",
    "nodes": [
        {
            "id": "menu",
            "type": "question",
            "header": "Sorriso Clinic",
            "text": "How can I help?",
            "footer": "Reply with a number",
            "buttons": [
                {"id": "book", "title": "Book"},
                {"id": "cancel", "title": "Cancel"},
                {"id": "human", "title": "Talk to us"},
            ],
            "variable": "action",
            "validate": {"kind": "choice"},
            "invalidText": "Please pick one of the options.",
            "next": "slot",
        },
        {
            "id": "slot",
            "type": "question",
            "text": "Pick a time:",
            "list": {
                "button": "Times",
                "sections": [
                    {
                        "title": "Morning",
                        "rows": [
                            {"id": "s1", "title": "09:00", "description": "Dr. Ana"},
                            {"id": "s2", "title": "10:30"},
                        ],
                    },
                    {
                        "title": "Afternoon",
                        "rows": [{"id": "s3", "title": "14:00", "description": "Dr. Bruno"}],
                    },
                ],
            },
            "variable": "slot",
            "validate": {"kind": "choice"},
            "next": "card",
        },
        {
            "id": "card",
            "type": "question",
            "text": "Send a photo of your insurance card.",
            "variable": "card",
            "validate": {"kind": "media", "accept": ["image/*"]},
            "maxInvalid": 0,
            "onInvalid": "where",
            "next": "where",
        },
        {
            "id": "where",
            "type": "message",
            "text": "This is where we are:",
            "location": {
                "latitude": -23.5614,
                "longitude": -46.6559,
                "name": "Sorriso Clinic",
                "address": "Av. Paulista, 1000",
            },
            "next": "front",
        },
        {
            "id": "front",
            "type": "message",
            "media": {"kind": "image", "url": FRONT, "caption": "Our front door"},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "See you at {{slot}} ({{action}})."},
    ],
}
MENU = (
    "Sorriso Clinic\n\nHow can I help?\n\n1. Book\n2. Cancel\n3. Talk to us\n\nReply with a number"
)
SLOTS = "Pick a time:\n\n1. 09:00 — Dr. Ana\n2. 10:30\n3. 14:00 — Dr. Bruno"
PLACE = f"This is where we are:\nSorriso Clinic\nAv. Paulista, 1000\n{MAP}"


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "rich.json"
    path.write_text(json.dumps(FLOW), encoding="utf-8")
    return path


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    return str(result.stdout)


def test_typing_numbers_on_a_terminal(cli: Cli, tmp_path: Path, flow: Path) -> None:
    """Numbered buttons and rows; 9 is not an option (asked again), 2 picks 'Cancel', 3 the
    third row across sections; the place prints its map link, the picture its link."""
    store = f"sqlite:///{tmp_path / 'chat.db'}"
    term = Terminal(cli, tmp_path, "run", str(flow), "--store", store)
    menu = term.answer("9")
    again = term.answer("2")
    slots = term.answer("3")
    card = term.answer("I have no photo")
    rest, err = term.finish()

    assert f"bot> {MENU}" in menu
    assert "Please pick one of the options.\n\n1. Book\n2. Cancel\n3. Talk to us" in again
    assert f"bot> {SLOTS}" in slots
    assert "Send a photo of your insurance card." in card
    assert f"bot> {PLACE}" in rest
    assert f"bot> Our front door\n{FRONT}" in rest
    assert "bot> See you at s3 (cancel)." in rest
    assert "completed (outcome completed)" in err

    execution_id = err.split("execution ", 1)[1].split(":", 1)[0]  # its status line
    shown = json.loads(ok(cli("show", execution_id, "--store", store, "--json")))
    assert shown["variables"]["action"] == "cancel"
    bots = [t for t in shown["transcript"] if t["from"] == "bot"]
    # what the terminal was sent: text, with the options it numbered kept beside it
    assert bots[0]["content"] == {
        "type": "text",
        "text": MENU,
        "options": [
            {"id": "book", "title": "Book"},
            {"id": "cancel", "title": "Cancel"},
            {"id": "human", "title": "Talk to us"},
        ],
    }
    assert bots[0]["text"] == MENU
    assert {"type": "text", "text": PLACE} in [b.get("content") for b in bots]
    assert "content" not in bots[-1]  # a plain text has none


def test_run_json_carries_each_messages_content(cli: Cli, tmp_path: Path, flow: Path) -> None:
    """``run --json``: every bot message with content has it, structured (the JSON reader
    renders what it likes); its ``text`` stays the plain rendering; numbers still pick."""
    store = f"sqlite:///{tmp_path / 'json.db'}"
    args = ["--input", "1", "--input", "2", "--input", "later"]
    data = json.loads(ok(cli("run", flow, "--store", store, "--json", *args)))
    assert data["status"] == "completed"
    assert data["variables"]["action"] == "book"
    assert data["variables"]["slot"] == "s2"
    said = [(t["from"], t["text"], t.get("content")) for t in data["transcript"]]
    assert said[0] == (
        "bot",
        MENU,
        {
            "type": "buttons",
            "text": "How can I help?",
            "header": "Sorriso Clinic",
            "footer": "Reply with a number",
            "buttons": [
                {"id": "book", "title": "Book"},
                {"id": "cancel", "title": "Cancel"},
                {"id": "human", "title": "Talk to us"},
            ],
        },
    )
    assert said[1] == ("contact", "1", None)
    assert said[2][1] == SLOTS
    assert said[2][2] == {
        "type": "list",
        "text": "Pick a time:",
        "list": {
            "button": "Times",
            "sections": [
                {
                    "title": "Morning",
                    "rows": [
                        {"id": "s1", "title": "09:00", "description": "Dr. Ana"},
                        {"id": "s2", "title": "10:30"},
                    ],
                },
                {
                    "title": "Afternoon",
                    "rows": [{"id": "s3", "title": "14:00", "description": "Dr. Bruno"}],
                },
            ],
        },
    }
    contents = [c for who, _, c in said if who == "bot" and c is not None]
    assert {
        "type": "location",
        "text": "This is where we are:",
        "location": {
            "latitude": -23.5614,
            "longitude": -46.6559,
            "name": "Sorriso Clinic",
            "address": "Av. Paulista, 1000",
        },
    } in contents
    assert {
        "type": "media",
        "text": "",
        "media": {"kind": "image", "url": FRONT, "caption": "Our front door"},
    } in contents
    assert ("bot", f"Our front door\n{FRONT}") in [(w, t) for w, t, _ in said]
    assert said[-1] == ("bot", "See you at s2 (book).", None)

    # show --json reads the same content back from the store
    shown = json.loads(ok(cli("show", data["executionId"], "--store", store, "--json")))
    assert [t.get("content") for t in shown["transcript"]] == [c for _, _, c in said]


def test_send_a_tap_and_a_photo_then_show(cli: Cli, tmp_path: Path, flow: Path) -> None:
    """A list row tapped and a photo sent with ``trilha send``: the list question saves the
    row's id, the media question the photo; ``show`` prints each with what it carried and
    ``show --json`` has their content."""
    store = f"sqlite:///{tmp_path / 'send.db'}"
    started = json.loads(ok(cli("run", flow, "--store", store, "--json", "--input", "3")))
    execution_id = started["executionId"]
    assert started["status"] == "waiting_input"
    ok(cli("send", execution_id, "14:00", "--type", "list", "--reply-id", "s3", "--store", store))
    photo = "https://media.example.com/card.jpg"
    sent = ok(
        cli(
            "send",
            execution_id,
            "--type",
            "media",
            "--media-kind",
            "image",
            "--media-url",
            photo,
            "--mime-type",
            "image/jpeg",
            "--caption",
            "front",
            "--store",
            store,
        )
    )
    assert MAP in sent  # the terminal prints the place as text with its map link

    shown = ok(cli("show", execution_id, "--store", store))
    assert "contact> 14:00 [list row s3]" in shown
    assert f"contact> front [image image/jpeg {photo}]" in shown
    assert "contact> 3\n" in shown  # a typed text is its text alone
    data = json.loads(ok(cli("show", execution_id, "--store", store, "--json")))
    assert data["variables"]["slot"] == "s3"
    assert data["variables"]["card"]["url"] == photo
    replies = [
        t["content"] for t in data["transcript"] if t["from"] == "contact" and "content" in t
    ]
    assert replies == [
        {"type": "list", "text": "14:00", "replyId": "s3"},
        {
            "type": "media",
            "media": {"kind": "image", "url": photo, "mimeType": "image/jpeg", "caption": "front"},
        },
    ]
