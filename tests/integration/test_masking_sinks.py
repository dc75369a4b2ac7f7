"""Personal data never reaches a log sink: the stored trail, the state history reasons,
`trilha logs` output and the process log lines are masked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from trilha.config import Config, DependencyConfig
from trilha.observability.logging import get_logger
from trilha.observability.trail import Identity, lines

CPF = "12345678909"
PHONE = "+5511987654321"


async def test_trail_and_history_mask_a_cpf_in_an_error(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A failing call whose URL carries the contact's CPF leaves no CPF in the stored
    trail, the transition reasons, or `trilha logs` lines (the contact id, a phone, too)."""
    http_server.route("GET", f"/customers/{CPF}", status=404)
    h = make_harness(Config(dependencies={"crm": DependencyConfig(base_url=http_server.url)}))
    await h.publish(
        {
            "id": "m",
            "start": "call",
            "nodes": [
                {
                    "id": "call",
                    "type": "http",
                    "dependency": "crm",
                    "url": "/customers/{{cpf}}",
                    "next": "x",
                },
                {"id": "x", "type": "end"},
            ],
        }
    )
    ex = await h.start("m", variables={"cpf": CPF}, contact_id=PHONE)
    await h.settle()
    records = await h.store.logs(ex.id)
    history = await h.store.transitions(ex.id)
    stored = json.dumps([r.context for r in records]) + json.dumps([t.reason for t in history])
    assert "answered 404" in stored  # the error is still readable
    assert CPF not in stored and PHONE not in stored
    execution = await h.get(ex.id)
    printed = json.dumps(lines(records, Identity.of(execution)))
    assert CPF not in printed and PHONE not in printed
    assert ex.id in printed  # execution ids stay readable


def test_process_log_lines_are_masked(process_log: Any) -> None:
    """The JSON process log masks e-mails, phones and secrets in messages and fields."""
    log = get_logger("trilha.test.masking")
    log.warning(
        "contact ana@example.com wrote",
        phone=PHONE,
        headers={"Authorization": "Bearer abc.def"},
    )
    text = process_log.text()
    assert "ana@example.com" not in text and PHONE not in text and "abc.def" not in text
    (line,) = process_log.lines()
    assert line["level"] == "WARN"
    assert line["context"]["metadata"]["logger"] == "trilha.test.masking"
