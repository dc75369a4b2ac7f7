"""Store contract: a message the channel failed after accepting it because the contact's
24-hour window was closed (Meta's ``131047``) is queued again as its template, once,
whoever asks and however often; a message without a template is left failed with a
``message.outside_window`` line; another institution's message is never touched."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from trilha.core.execution import Execution
from trilha.store.base import Store, TemplateResend

from .conftest import LEASE, T0, Make

TEMPLATE: dict[str, Any] = {
    "name": "retomar_conversa",
    "language": "pt_BR",
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
}
BUTTONS: dict[str, Any] = {
    "type": "buttons",
    "text": "Olá, Ana! O que deseja?",
    "buttons": [{"id": "agendar", "title": "Agendar"}, {"id": "cancelar", "title": "Cancelar"}],
    "template": TEMPLATE,
}
ERROR = "131047: Re-engagement message (Message failed to send because more than 24 hours)"


async def _sent(
    store: Store, make: Make, content: dict[str, Any] | None, **fields: Any
) -> tuple[Execution, str]:
    """An execution whose one message (with ``content``) was sent and then reported
    ``failed`` 131047 by the channel; its idempotency key."""
    ex = await make.create(store, **fields)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, texts=["Olá, Ana! O que deseja?"])
    commit = dataclasses.replace(
        commit, outbox=[dataclasses.replace(m, content=content) for m in commit.outbox]
    )
    await store.commit_step(commit, now=T0)
    [message] = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert message.id is not None
    await store.mark_sent([message.id], now=T0 + 1)
    key = message.idempotency_key
    receipt = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status="failed",
        at=T0 + 5,
        error=ERROR,
        now=T0 + 5,
    )
    assert receipt is not None and receipt.delivery.receipt == "failed"
    return ex, key


async def _resend(
    store: Store, ex: Execution, key: str, *, now: float = T0 + 6, first: bool = True, **at: str
) -> TemplateResend:
    return await store.resend_as_template(
        institution_id=at.get("institution", ex.institution_id),
        conversation_id=at.get("conversation", ex.conversation_id),
        idempotency_key=key,
        code=131047,
        error=ERROR,
        now=now,
        first=first,
    )


def _lines(logs: list[Any], message: str) -> list[Any]:
    return [r for r in logs if r.message == message]


async def test_the_message_is_queued_again_as_its_template_once(store: Store, make: Make) -> None:
    ex, key = await _sent(store, make, BUTTONS)
    resent = await _resend(store, ex, key)
    assert resent == TemplateResend("resent", ex.id)
    [message] = await store.outbox_for(ex.id)
    # the content the engine would have chosen outside the window: the template, the text
    # as its fallback, the buttons kept as options a reply picks from
    assert message.content == {
        "type": "template",
        "template": TEMPLATE,
        "text": "Olá, Ana! O que deseja?",
        "options": [{"id": "agendar", "title": "Agendar"}, {"id": "cancelar", "title": "Cancelar"}],
    }
    assert (message.status, message.attempts, message.text) == (
        "pending",
        1,
        "Olá, Ana! O que deseja?",
    )
    [delivery] = await store.deliveries(ex.id)
    assert delivery.next_attempt_at == T0 + 6
    assert delivery.last_error is not None and delivery.last_error.startswith("outside_window:")
    [line] = _lines(await store.logs(ex.id), "message.resent_as_template")
    assert line.level == "WARN"
    assert line.context["code"] == 131047
    assert line.context["idempotencyKey"] == key
    assert line.context["template"] == "retomar_conversa"
    assert (line.context["from"], line.context["attempts"]) == ("sent", 1)

    # Meta repeats the status, or another process handles it too: nothing more is written
    again = await _resend(store, ex, key, now=T0 + 7, first=False)
    assert again == TemplateResend("switched", ex.id)
    assert _lines(await store.logs(ex.id), "message.resent_as_template") == [line]
    [still] = await store.deliveries(ex.id)
    assert still.next_attempt_at == T0 + 6

    # the dispatcher hands it out again, with the template, under its own key
    [claimed] = await store.claim_outbox("d2", now=T0 + 6, lease_seconds=LEASE, limit=10)
    assert (claimed.idempotency_key, claimed.content) == (key, message.content)
    assert claimed.id is not None
    # a repeat while it is out with the dispatcher changes nothing either
    assert (await _resend(store, ex, key, now=T0 + 7)).outcome == "switched"
    await store.mark_sent([claimed.id], now=T0 + 8)
    # the template's receipts (same key) move the delivery past the failure
    for status in ("sent", "delivered", "read"):
        await store.record_receipt(
            institution_id=ex.institution_id,
            conversation_id=ex.conversation_id,
            idempotency_key=key,
            status=status,
            at=T0 + 9,
            error=None,
            now=T0 + 9,
        )
    [done] = await store.deliveries(ex.id)
    assert (done.status, done.attempts, done.receipt) == ("sent", 2, "read")
    assert (await _resend(store, ex, key, now=T0 + 10)).outcome == "switched"


async def test_two_at_once_switch_it_once(store: Store, make: Make) -> None:
    ex, key = await _sent(store, make, BUTTONS)
    outcomes = await asyncio.gather(*(_resend(store, ex, key) for _ in range(4)))
    assert sorted(o.outcome for o in outcomes) == ["resent", "switched", "switched", "switched"]
    assert len(_lines(await store.logs(ex.id), "message.resent_as_template")) == 1
    claimed = await store.claim_outbox("d2", now=T0 + 6, lease_seconds=LEASE, limit=10)
    assert [m.content["type"] for m in claimed if m.content] == ["template"]


async def test_a_message_without_a_template_stays_failed_with_a_line_saying_why(
    store: Store, make: Make
) -> None:
    plain = {k: v for k, v in BUTTONS.items() if k != "template"}
    ex, key = await _sent(store, make, plain)
    assert await _resend(store, ex, key) == TemplateResend("no_template", ex.id)
    assert (await _resend(store, ex, key, first=False)).outcome == "no_template"
    [line] = _lines(await store.logs(ex.id), "message.outside_window")
    assert line.level == "WARN"
    assert (line.context["code"], line.context["idempotencyKey"]) == (131047, key)
    assert "outside_window" in line.context["reason"]
    [message] = await store.outbox_for(ex.id)
    assert (message.status, message.content) == ("sent", plain)
    assert not _lines(await store.logs(ex.id), "message.resent_as_template")
    # a plain text (no content at all) is the same
    ex2, key2 = await _sent(store, make, None)
    assert (await _resend(store, ex2, key2)).outcome == "no_template"
    assert [m.status for m in await store.outbox_for(ex2.id)] == ["sent"]


async def test_a_template_from_the_start_is_not_sent_again(store: Store, make: Make) -> None:
    template = {"type": "template", "template": TEMPLATE, "text": "Olá"}
    ex, key = await _sent(store, make, template)
    assert await _resend(store, ex, key) == TemplateResend("switched", ex.id)
    assert [m.status for m in await store.outbox_for(ex.id)] == ["sent"]


async def test_another_institutions_message_is_never_touched(store: Store, make: Make) -> None:
    ex, key = await _sent(store, make, BUTTONS, institution="inst-a")
    for where in (
        {"institution": "inst-b"},
        {"conversation": "another-conversation"},
    ):
        assert await _resend(store, ex, key, **where) == TemplateResend("not_found")
    assert await _resend(store, ex, "no-such-key") == TemplateResend("not_found")
    [message] = await store.outbox_for(ex.id)
    assert (message.status, message.content) == ("sent", BUTTONS)
    assert not _lines(await store.logs(ex.id), "message.resent_as_template")


async def test_a_message_out_with_a_dispatcher_is_asked_again_later(
    store: Store, make: Make
) -> None:
    """The status overtook the send's own bookkeeping (the dispatcher has not recorded
    it sent yet): nothing is switched under the dispatcher's feet."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution)
    commit = dataclasses.replace(
        commit, outbox=[dataclasses.replace(m, content=BUTTONS) for m in commit.outbox]
    )
    await store.commit_step(commit, now=T0)
    [message] = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    key = message.idempotency_key
    assert (await _resend(store, ex, key, now=T0 + 1)).outcome == "in_flight"
    assert [m.content for m in await store.outbox_for(ex.id)] == [BUTTONS]
    # its retry after a failed attempt (no lease held) takes the template
    assert message.id is not None
    await store.mark_failed(message.id, error="timed out", retry_at=T0 + 60, now=T0 + 2)
    assert (await _resend(store, ex, key, now=T0 + 3)).outcome == "resent"
    [pending] = await store.outbox_for(ex.id)
    assert pending.content is not None and pending.content["type"] == "template"
    assert (pending.status, pending.attempts) == ("pending", 1)


async def test_the_templates_own_failure_is_a_receipt_of_its_own(store: Store, make: Make) -> None:
    """Receipts are once per status per platform message: the template (another wamid
    under the same key) failing is recorded, with its trail line; Meta repeating either
    failure is a duplicate; a receipt without a platform id is once per status."""
    ex, key = await _sent(store, make, BUTTONS)  # its failure carried no platform id

    async def failed(wamid: str | None, error: str) -> Any:
        return await store.record_receipt(
            institution_id=ex.institution_id,
            conversation_id=ex.conversation_id,
            idempotency_key=key,
            status="failed",
            at=T0 + 20,
            error=error,
            now=T0 + 20,
            message_id=wamid,
        )

    assert (await failed(None, ERROR)).duplicate
    first = await failed("wamid.menu", ERROR)
    assert (first.duplicate, first.advanced) == (False, False)
    assert (await failed("wamid.menu", ERROR)).duplicate
    await _resend(store, ex, key)
    own = await failed("wamid.template", "132001: Template name does not exist")
    assert (own.duplicate, own.advanced, own.delivery.receipt) == (False, False, "failed")
    assert (await failed("wamid.template", "132001: Template name does not exist")).duplicate
    told = [
        r.context["error"]
        for r in await store.logs(ex.id)
        if r.message == "message.status" and r.context["status"] == "failed"
    ]
    assert told[-1].startswith("132001:") and len(told) == 3
