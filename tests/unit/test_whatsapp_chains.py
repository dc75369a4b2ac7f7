"""Which stored WhatsApp bodies the processor may handle side by side: those that share
no conversation. Bodies of one contact stay in one chain, in the order stored; a body
naming two contacts joins their chains; an unreadable one stands alone."""

from __future__ import annotations

import whatsapp_webhooks as wa
from trilha.api.whatsapp_webhooks import chains, read_body
from trilha.store.base import ChannelWebhook


def hook(id: int, body: bytes) -> ChannelWebhook:
    return ChannelWebhook(id, "whatsapp", body, 0.0, "pending", 1, 0.0, 0)


def says(*contacts: str) -> bytes:
    values = [wa.value(messages=[wa.text(f"wamid.{c}", "oi", wa_id=c)], wa_id=c) for c in contacts]
    return wa.encode(wa.notification(*values))


def test_bodies_sharing_a_contact_form_one_chain_in_order() -> None:
    a, b, c = hook(1, says("111")), hook(2, says("222")), hook(3, says("111", "333"))
    d = hook(4, says("333"))
    unreadable = hook(5, b"{not json")
    status = hook(6, wa.encode(wa.notification(wa.value(statuses=[
        wa.status("wamid.x", "read", key="k", recipient="222")]))))  # fmt: skip
    got = chains([(h, read_body(h)) for h in (a, b, c, d, unreadable, status)])
    assert sorted([h.id for h, _ in chain] for chain in got) == [[1, 3, 4], [2, 6], [5]]


def test_a_late_body_joining_two_chains_keeps_the_stored_order() -> None:
    first, second, both = hook(1, says("111")), hook(2, says("222")), hook(3, says("222", "111"))
    got = chains([(h, read_body(h)) for h in (first, second, both)])
    assert [[h.id for h, _ in chain] for chain in got] == [[1, 2, 3]]
