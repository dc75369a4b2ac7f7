"""A message failed by a status because the contact's window had closed: the codes read
from Meta's ``errors`` and the content that sends the template instead."""

from __future__ import annotations

from typing import Any

import whatsapp_webhooks as wa  # tests/ is on sys.path (rootdir mode)
from trilha.channels.whatsapp.inbound import StatusUpdate, error_codes, parse_webhook
from trilha.core.reengage import REENGAGEMENT_CODE, template_instead

TEMPLATE = {"name": "menu_inicial", "language": "pt_BR"}


def test_a_failed_status_carries_its_error_codes() -> None:
    errors = [{"code": 131047, "title": "Re-engagement message"}, {"code": 131026}]
    body = wa.notification(
        wa.value(statuses=[wa.status("wamid.o", "failed", key="ex-1:1:0", errors=errors)])
    )
    (failed,) = parse_webhook(body)
    assert isinstance(failed, StatusUpdate)
    assert failed.codes == (REENGAGEMENT_CODE, 131026)
    (sent,) = parse_webhook(wa.notification(wa.value(statuses=[wa.status("w", "sent", key="k")])))
    assert isinstance(sent, StatusUpdate) and sent.codes == ()
    # codes that are not integers are left out; the list read is bounded
    assert error_codes([{"code": "131047"}, {"code": True}, "x", {"code": 1.0}]) == ()
    assert error_codes([{"code": 1}] * 50) == (1,) * 10
    assert error_codes(None) == ()


def test_the_template_instead_keeps_the_text_and_the_options() -> None:
    buttons: dict[str, Any] = {
        "type": "buttons",
        "text": "Como posso ajudar?",
        "buttons": [{"id": "agendar", "title": "Agendar"}],
        "template": TEMPLATE,
    }
    assert template_instead(buttons, "Como posso ajudar?") == {
        "type": "template",
        "template": TEMPLATE,
        "text": "Como posso ajudar?",
        "options": [{"id": "agendar", "title": "Agendar"}],
    }
    text = {"type": "text", "text": "Oi", "template": TEMPLATE}
    assert template_instead(text, "Oi") == {"type": "template", "template": TEMPLATE, "text": "Oi"}


def test_no_template_instead_without_one_or_of_a_template() -> None:
    assert template_instead(None, "Oi") is None
    assert template_instead({"type": "text", "text": "Oi"}, "Oi") is None
    assert template_instead({"type": "text", "text": "Oi", "template": "menu"}, "Oi") is None
    switched = {"type": "template", "template": TEMPLATE, "text": "Oi"}
    assert template_instead(switched, "Oi") is None
