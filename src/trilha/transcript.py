"""The transcript as the wire shows it: each bot message with where its delivery stands.

A bot message carries the outbox's state (``queued``, ``pending`` after a failed
attempt, ``sent`` once the channel accepted it, ``dead`` when given up), its attempts,
next try and last error, the furthest receipt the channel reported (``delivery``:
``sent``, ``delivered``, ``read`` or ``failed``, with its time) and whether it counts
as ``undelivered`` (:func:`trilha.core.delivery.undelivered`). One form for
``GET /v1/executions/{id}``, ``GET /v1/executions/{id}/transcript`` and
``trilha show --json``. Errors are shown masked, as the trail is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trilha.core.content import map_link
from trilha.core.delivery import outbox_state, undelivered
from trilha.core.execution import TranscriptEntry, iso
from trilha.observability.masking import mask_text
from trilha.store.base import Delivery


def delivery_view(d: Delivery) -> dict[str, Any] | None:
    """The channel's furthest report on a message, or ``None`` before any."""
    if d.receipt is None:
        return None
    shown: dict[str, Any] = {"status": d.receipt, "at": iso(d.receipt_at)}
    if d.receipt_error is not None:
        shown["error"] = mask_text(d.receipt_error)
    return shown


def bot_message_view(d: Delivery, *, now: float) -> dict[str, Any]:
    """What a bot message of the transcript gains: its outbox state and its delivery."""
    state = outbox_state(d.status, d.attempts)
    return {
        "outbox": state,
        "attempts": d.attempts,
        "nextAttemptAt": iso(d.next_attempt_at) if state in ("queued", "pending") else None,
        "lastError": mask_text(d.last_error) if d.last_error is not None else None,
        "delivery": delivery_view(d),
        "undelivered": undelivered(d.status, d.attempts, d.created_at, d.receipt, now=now),
    }


def transcript_view(
    entries: Sequence[TranscriptEntry], deliveries: Sequence[Delivery], *, now: float
) -> list[dict[str, Any]]:
    """The transcript's items, bot messages with their delivery. Both lists come from
    the store in the same order (the step that sent a message, then its id), so the
    n-th bot line is the n-th delivery; a text that does not match (a message written
    between the two reads) is shown without one rather than with another's."""
    pending = iter(deliveries)
    shown = []
    for entry in entries:
        item = entry.wire()
        if entry.sender != "contact":  # the bot's, or a person's: both go out the outbox
            d = next(pending, None)
            if d is not None and d.text == entry.text:
                item.update(bot_message_view(d, now=now))
        shown.append(item)
    return shown


def contact_note(content: Mapping[str, Any] | None) -> str | None:
    """What a contact's structured message adds to its ``text`` on a line of text (``trilha
    show``): the id a tapped button or row carried, a file's kind, type and link, a
    place's map link. ``None`` for a typed text, which its text says whole."""
    if not content:
        return None
    kind = content.get("type")
    if kind in ("button", "list") and content.get("replyId") is not None:
        return f"[{'button' if kind == 'button' else 'list row'} {content['replyId']}]"
    media = content.get("media")
    if kind == "media" and isinstance(media, Mapping):
        parts = [media.get("kind"), media.get("mimeType"), media.get("filename"), media.get("url")]
        return "[" + " ".join(str(p) for p in parts if p) + "]"
    place = content.get("location")
    if kind == "location" and isinstance(place, Mapping):
        try:
            return f"[location {map_link(float(place['latitude']), float(place['longitude']))}]"
        except (KeyError, TypeError, ValueError):
            return "[location]"
    return None


def undelivered_count(deliveries: Sequence[Delivery], *, now: float) -> int:
    """How many of an execution's messages are undelivered (the listing's count)."""
    return sum(
        undelivered(d.status, d.attempts, d.created_at, d.receipt, now=now) for d in deliveries
    )
