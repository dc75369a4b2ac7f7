"""Personal data never reaches a log sink: the stored trail, the state history reasons,
`trilha logs` output and the process log lines are masked.

Every kind the unit tests of masking cover (:data:`masking_cases.MASKED`: e-mails,
phones, CPF and CNPJ formatted and bare, cards, secrets) goes through each sink, and
each sink must hold its masked form (masked, not dropped) and never the original."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from masking_cases import MASKED  # tests/ is on sys.path (rootdir mode)
from trilha.config import Config, DependencyConfig, LoggingConfig
from trilha.observability.logging import configure, get_logger
from trilha.observability.trail import Identity, lines

CPF = "123.456.789-09"
CNPJ = "12.345.678/0001-95"
PHONE = "+5511987654321"
#: every case once, each in the context the unit tests embed it in
EVERY_KIND = "\n".join(f"«{text}»" for text, _ in MASKED)

CHAT = {
    "id": "chat",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Seus dados?",
            "variable": "dados",
            "next": "echo",
        },
        {"id": "echo", "type": "message", "text": "Recebi:\n{{dados}}", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded value (keys too): what a reader of the sink sees, not
    its JSON spelling (which escapes the quotes some cases hold)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _leaks(sink: str) -> list[tuple[str, str]]:
    """The cases whose original text is in ``sink``, or whose masked form is not."""
    return [(text, expected) for text, expected in MASKED if text in sink or expected not in sink]


async def test_every_kind_is_masked_in_the_stored_trail_and_the_process_log(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    """A contact's reply holding every kind, echoed back by the bot: the stored trail,
    `trilha logs` lines and the echoed process log hold each masked, none in clear."""
    configure(LoggingConfig(level="INFO", format="json"), stream=process_log.stream)
    h = make_harness()
    await h.publish(CHAT)
    ex = await h.start("chat", contact_id=PHONE)
    await h.settle()
    done = await h.reply(ex.id, EVERY_KIND)
    assert done.status.value == "completed"

    records = await h.store.logs(ex.id)
    received = [r for r in records if r.message == "message.received"]
    queued = [r for r in records if r.message == "message.queued"]
    assert received and len(queued) == 2  # the question and the echo
    for record in (*received, queued[-1]):
        assert _leaks("\n".join(_strings(record.context))) == [], record.message
    stored = "\n".join(s for r in records for s in _strings([r.message, r.context]))
    assert PHONE not in stored

    printed = lines(records, Identity.of(done))
    for line in printed:
        if line["message"] in ("message.received", "message.queued") and "Recebi" in str(line):
            assert _leaks("\n".join(_strings(line))) == []
    assert PHONE not in "\n".join(s for line in printed for s in _strings(line))

    echoed = [line for line in process_log.lines() if line["executionId"] == ex.id]
    for message in ("message.received", "message.queued"):
        told = [line for line in echoed if line["message"] == message]
        assert told, message
        assert _leaks("\n".join(_strings(told[-1]))) == [], message
    assert PHONE not in process_log.text()


async def test_trail_and_history_mask_a_formatted_cpf_and_cnpj_in_an_error(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A failing call whose URL carries the contact's CPF and CNPJ, formatted or bare,
    leaves none of them in the stored trail, the transition reasons, or `trilha logs`
    lines (nor the contact id, a phone)."""
    bare_cpf, bare_cnpj = "12345678909", "11222333000181"
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
                    "url": "/customers/{{cpf}}/orders?a={{cpf2}}&b={{cnpj}}",
                    "next": "x",
                },
                {"id": "x", "type": "end"},
            ],
        }
    )
    variables = {"cpf": CPF, "cpf2": bare_cpf, "cnpj": bare_cnpj}
    ex = await h.start("m", variables=variables, contact_id=PHONE)
    await h.settle()
    assert http_server.requests, "the call was made"
    records = await h.store.logs(ex.id)
    history = await h.store.transitions(ex.id)
    stored = "\n".join(
        [
            *(s for r in records for s in _strings([r.message, r.context])),
            *(t.reason for t in history),
        ]
    )
    assert "answered 404" in stored  # the error is still readable
    assert "***.***.***-**" in stored  # masked, not dropped
    for secret in (CPF, bare_cpf, bare_cnpj, PHONE, "123.456.789", "11222333"):
        assert secret not in stored, secret
    printed = "\n".join(
        s for line in lines(records, Identity.of(await h.get(ex.id))) for s in _strings(line)
    )
    for secret in (CPF, bare_cpf, bare_cnpj, PHONE):
        assert secret not in printed, secret
    assert ex.id in printed  # execution ids stay readable


def test_process_log_lines_are_masked(process_log: Any) -> None:
    """A process event masks every kind in its message, its fields and nested values."""
    log = get_logger("trilha.test.masking")
    log.warning(
        f"contact wrote {EVERY_KIND}",
        text=EVERY_KIND,
        nested={"items": [EVERY_KIND]},
        phone=PHONE,
        headers={"Authorization": "Bearer abc.def"},
    )
    (line,) = process_log.lines()
    assert line["level"] == "WARN"
    assert line["context"]["metadata"]["logger"] == "trilha.test.masking"
    assert _leaks(line["message"]) == []
    metadata = line["context"]["metadata"]
    assert _leaks(metadata["text"]) == []
    assert _leaks(metadata["nested"]["items"][0]) == []
    text = process_log.text()
    assert PHONE not in text and "abc.def" not in text
    for formatted in (CPF, CNPJ, "12345678909", "12345678000195"):
        assert formatted not in json.dumps(line, ensure_ascii=False)
