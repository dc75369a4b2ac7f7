"""Store contract: a message's structured content (buttons, a list, media, a location) is
kept beside its plain text, on both sides, and read back wherever the message is."""

from __future__ import annotations

import dataclasses
from typing import Any

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus
from trilha.store.base import StepCommit, Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus

BUTTONS: dict[str, Any] = {
    "type": "buttons",
    "text": "Olá, Ana! O que deseja?",
    "buttons": [{"id": "agendar", "title": "Agendar"}, {"id": "cancelar", "title": "Cancelar"}],
}
#: what a contact may send, one of each type (the API's wire form)
REPLIES: list[tuple[str, dict[str, Any] | None]] = [
    ("oi", None),
    ("Hello", {"type": "text", "text": "Hello", "language": "en"}),
    ("Agendar", {"type": "button", "replyId": "agendar", "text": "Agendar"}),
    ("09:00", {"type": "list", "replyId": "slot-1", "text": "09:00", "language": "pt-BR"}),
    (
        "carteirinha frente",
        {
            "type": "media",
            "media": {
                "kind": "image",
                "url": "https://cdn.example.com/m/1.jpg?sig=a%2Fb",
                "mimeType": "image/jpeg",
                "caption": "carteirinha frente",
            },
        },
    ),
    ("[document]", {"type": "media", "media": {"kind": "document", "url": "https://x.io/d"}}),
    (
        "Clínica São José, Av. Paulista, 1000",
        {
            "type": "location",
            "location": {
                "latitude": -23.561414,
                "longitude": -46.655881,
                "name": "Clínica São José",
                "address": "Av. Paulista, 1000",
            },
        },
    ),
    ("0.0,-0.5", {"type": "location", "location": {"latitude": 0.0, "longitude": -0.5}}),
]


async def _waiting(store: Store, make: Make) -> Execution:
    return await make.create(store, status=S.WAITING_INPUT, wake_at=None)


async def _deliver(
    store: Store,
    ex: Execution,
    text: str,
    content: dict[str, Any] | None,
    message_id: str,
    *,
    now: float = T0,
    by_execution: bool = False,
) -> Any:
    return await store.deliver_inbound(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        message_id=message_id,
        contact_id=ex.contact_id,
        text=text,
        payload=None,
        now=now,
        execution_id=ex.id if by_execution else None,
        content=content,
    )


def _with_content(commit: StepCommit, *contents: dict[str, Any] | None) -> StepCommit:
    """``commit`` whose outbox messages carry ``contents``, one each, in order."""
    outbox = [
        dataclasses.replace(m, content=c) for m, c in zip(commit.outbox, contents, strict=True)
    ]
    return dataclasses.replace(commit, outbox=outbox)


async def test_inbound_content_of_every_type_is_stored_and_read_back(
    store: Store, make: Make
) -> None:
    """deliver_inbound keeps each type's content as given (None for a plain text) and gives
    it back from the delivery, the inbox and the transcript, with its plain text."""
    ex = await _waiting(store, make)
    results = [
        await _deliver(store, ex, text, content, f"wamid-{i}", now=T0 + i)
        for i, (text, content) in enumerate(REPLIES)
    ]
    assert [r.status for r in results] == ["accepted"] * len(REPLIES)
    assert [(r.message.text, r.message.content) for r in results] == REPLIES
    assert [(m.text, m.content) for m in await store.inbox_for(ex.id)] == REPLIES
    transcript = await store.transcript(ex.id)
    assert [(e.sender, e.text, e.content) for e in transcript] == [
        ("contact", text, content) for text, content in REPLIES
    ]
    # the wire shows content only when there is some: a plain text stays as it was
    assert transcript[0].wire() == {
        "from": "contact",
        "text": "oi",
        "at": transcript[0].wire()["at"],
    }
    assert transcript[4].wire()["content"]["media"]["mimeType"] == "image/jpeg"


async def test_content_defaults_to_none(store: Store, make: Make) -> None:
    """A caller that passes no content (every caller before structured messages) stores a
    plain text: content None on every read."""
    ex = await _waiting(store, make)
    sent = await make.inbound(store, ex, "só texto")
    assert sent.message.content is None
    assert [m.content for m in await store.inbox_for(ex.id)] == [None]
    assert [(e.text, e.content) for e in await store.transcript(ex.id)] == [("só texto", None)]


async def test_reply_by_execution_id_keeps_its_content(store: Store, make: Make) -> None:
    """The delivery addressed to an execution (``trilha send``) stores its content too."""
    ex = await _waiting(store, make)
    location = REPLIES[6][1]
    sent = await _deliver(store, ex, "here", location, "m-1", by_execution=True)
    assert (sent.status, sent.message.execution_id, sent.message.content) == (
        "accepted",
        ex.id,
        location,
    )


async def test_a_duplicate_keeps_the_first_content(store: Store, make: Make) -> None:
    """A repeated message id is a duplicate carrying the first delivery's text and content;
    the second content is not stored."""
    ex = await _waiting(store, make)
    first = await _deliver(store, ex, "Agendar", REPLIES[2][1], "wamid-1")
    again = await _deliver(store, ex, "Cancelar", {"type": "button", "replyId": "x"}, "wamid-1")
    assert (again.status, again.message) == ("duplicate", first.message)
    assert again.message.content == REPLIES[2][1]
    assert [e.content for e in await store.transcript(ex.id)] == [REPLIES[2][1]]


async def test_a_claimed_reply_carries_its_content(store: Store, make: Make) -> None:
    """The reply a worker's claim hands out (what a question reads) has its content."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=T0 + 3600, due_at=T0 + 3600)
    media = REPLIES[4][1]
    reply = await _deliver(store, ex, "carteirinha frente", media, "wamid-1", now=T0 + 5)
    (claim,) = await store.claim_due("w1", now=T0 + 5, lease_seconds=LEASE, limit=10)
    assert claim.inbound == reply.message
    assert claim.inbound is not None and claim.inbound.content == media


async def test_outbound_content_is_kept_with_the_message(store: Store, make: Make) -> None:
    """A step's outbox messages keep their content: claimed for delivery, listed for the
    execution and in the transcript exactly as committed; a plain text stays None."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = _with_content(
        make.step(claimed.execution, texts=["Olá, Ana! O que deseja?", "plain"], wake_at=None),
        BUTTONS,
        None,
    )
    await store.commit_step(commit, now=T0)
    delivered = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert [dataclasses.replace(m, id=None) for m in delivered] == commit.outbox
    assert [m.content for m in await store.outbox_for(ex.id)] == [BUTTONS, None]
    transcript = await store.transcript(ex.id)
    assert [(e.sender, e.text, e.content) for e in transcript] == [
        ("bot", "Olá, Ana! O que deseja?", BUTTONS),
        ("bot", "plain", None),
    ]
    assert transcript[0].wire()["content"] == BUTTONS
    assert "content" not in transcript[1].wire()


async def test_transcript_interleaves_content_of_both_sides(store: Store, make: Make) -> None:
    """A reply and the bot messages of the step that consumed it come in order, each with
    its own content."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    ask = _with_content(
        make.step(claimed.execution, status=S.WAITING_INPUT, texts=["O que deseja?"]), BUTTONS
    )
    await store.commit_step(ask, now=T0)
    reply = await _deliver(store, ex, "Agendar", REPLIES[2][1], "wamid-1", now=T0 + 1)
    (claim,) = await store.claim_due("w1", now=T0 + 1, lease_seconds=LEASE, limit=10)
    assert claim.inbound is not None and claim.inbound.id == reply.message.id
    location = {"type": "location", "location": {"latitude": -23.56, "longitude": -46.65}}
    answer = _with_content(
        make.step(
            claim.execution,
            status=S.COMPLETED,
            texts=["Estamos aqui"],
            applied=[reply.message.id],
            at=T0 + 1,
        ),
        location,
    )
    await store.commit_step(answer, now=T0 + 1)
    assert [(e.sender, e.text, e.content) for e in await store.transcript(ex.id)] == [
        ("bot", "O que deseja?", BUTTONS),
        ("contact", "Agendar", REPLIES[2][1]),
        ("bot", "Estamos aqui", location),
    ]


async def test_content_survives_a_reopen(backend: Backend, make: Make) -> None:
    """Content is on disk, not in a handle: a new process reads both sides back."""
    store = await backend.open()
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(
        _with_content(make.step(claimed.execution, status=S.WAITING_INPUT), BUTTONS), now=T0
    )
    await _deliver(store, ex, "09:00", REPLIES[3][1], "wamid-1")
    again = await backend.reopen(store)
    assert [e.content for e in await again.transcript(ex.id)] == [BUTTONS, REPLIES[3][1]]
    assert [m.content for m in await again.outbox_for(ex.id)] == [BUTTONS]
    assert [m.content for m in await again.inbox_for(ex.id)] == [REPLIES[3][1]]
