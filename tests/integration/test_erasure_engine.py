"""The eraser over a real SQLite store and the real process log pipeline: a contact with
an execution waiting for its reply is cancelled first (counted), then erased; the log
file and its rotated copies lose exactly the contact's lines, and the handler keeps
writing to the new file afterwards; another contact's lines stay. Retention erases
ended executions past their institution's days and leaves the rest."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trilha.config import Config, LoggingConfig, RetentionConfig
from trilha.engine.erasure import Eraser
from trilha.engine.operator import Operator
from trilha.errors import ExecutionNotFound
from trilha.observability.log_erasure import Marks, erase_lines
from trilha.observability.logging import configure, get_logger

CHAT = {
    "id": "chat",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Seu CPF?", "variable": "cpf", "next": "bye"},
        {"id": "bye", "type": "message", "text": "Obrigado, {{cpf}}.", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}


def _eraser(h: Any, config: Config) -> Eraser:
    return Eraser(h.store, Operator(h.store, h.engine), config, h.clock)


async def test_a_contact_is_cancelled_erased_and_cut_from_the_log_file(
    make_harness: Callable[..., Any], process_log: Any, tmp_path: Path
) -> None:
    path = tmp_path / "trilha.log"
    logs = LoggingConfig(level="DEBUG", format="json", file=str(path), file_backups=2)
    configure(logs, stream=process_log.stream)
    config = Config(logging=logs)
    h = make_harness(config)
    await h.publish(CHAT)
    ana = await h.start("chat", "conv-ana", contact_id="ana-42", institution_id="acme")
    bruno = await h.start("chat", "conv-bruno", contact_id="bruno-7", institution_id="acme")
    await h.settle()
    await h.reply(bruno.id, "987.654.321-00")
    # an older rotated copy holding one of ana's lines, and one of nobody's
    rotated = path.with_name("trilha.log.1")
    rotated.write_text(f'{{"executionId":"{ana.id}"}}\n{{"executionId":null}}\n')
    before = path.read_text(encoding="utf-8")
    assert ana.id in before and bruno.id in before

    receipt = await _eraser(h, config).forget_contact("acme", "ana-42", actor="key:admin")

    assert receipt.cancelled == 1  # waiting for its reply: cancelled first
    assert receipt.removed["executions"] == 1
    with pytest.raises(ExecutionNotFound):
        await h.get(ana.id)
    assert (await h.get(bruno.id)).status.value == "completed"
    after = path.read_text(encoding="utf-8")
    assert ana.id not in after and "conv-ana" not in after
    assert bruno.id in after
    assert rotated.read_text() == '{"executionId":null}\n'
    marks = (f'"{ana.id}"', '"conv-ana"', '"ana-42"')
    anas = [line for line in before.splitlines() if any(m in line for m in marks)]
    # those, the rotated copy's, and the cancel's own lines (written after ``before``)
    assert receipt.removed["logFileLines"] >= len(anas) + 1 > 1
    # the handler writes on, into the new file
    get_logger("trilha.test").info("after.erasure")
    for handler in logging.getLogger("trilha").handlers:
        handler.flush()
    assert "after.erasure" in path.read_text(encoding="utf-8")
    # the audit line names no one
    audit = [line for line in path.read_text().splitlines() if "contact.erased" in line]
    assert len(audit) == 1 and "ana-42" not in audit[0] and receipt.erasure_id in audit[0]


def test_erase_lines_goes_by_the_fields_of_each_line(tmp_path: Path) -> None:
    """A line is the contact's by its own fields: the erased execution, one of their
    conversations, or the contact in the erasure's institution. The same id elsewhere
    (another institution's contact "1", a message id "1", a number) keeps its line."""

    def line(execution: str | None, **context: str) -> str:
        return json.dumps({"executionId": execution, "message": "m", "context": context})

    lines = [
        line("e1"),  # the erased execution
        line(None, conversationId="c1", institutionId="acme"),  # their conversation
        line(None, contactId="1", institutionId="acme"),  # the contact, in acme
        line(None, contactId="1", institutionId="beta"),  # beta's contact "1"
        line("e2", contactId="2", institutionId="acme", messageId="1"),  # "1" as another id
        line("e10"),  # e10 is not e1
        'not json, naming "1" and e1',
    ]
    path = tmp_path / "p.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "p.log.1").write_text(line("e1") + "\n" + line("e3") + "\n", encoding="utf-8")
    marks = Marks.of("acme", "1", ["e1"], ["c1"])
    assert erase_lines(path, 3, marks) == 4
    assert path.read_text().splitlines() == lines[3:]
    assert (tmp_path / "p.log.1").read_text().splitlines() == [line("e3")]
    assert erase_lines(path, 3, Marks.of("acme", "nobody", [], [])) == 0
    assert erase_lines(tmp_path / "absent.log", 3, marks) == 0


async def test_retention_erases_what_ended_before_its_days(
    make_harness: Callable[..., Any],
) -> None:
    h = make_harness()
    await h.publish(CHAT)
    old = await h.start("chat", "c-old", contact_id="k1", institution_id="acme")
    short = await h.start("chat", "c-short", contact_id="k2", institution_id="beta")
    await h.settle()
    await h.reply(old.id, "1")
    await h.reply(short.id, "2")
    h.clock.advance(40 * 86_400)
    recent = await h.start("chat", "c-recent", contact_id="k3", institution_id="acme")
    await h.settle()
    await h.reply(recent.id, "3")
    waiting = await h.start("chat", "c-waiting", contact_id="k4", institution_id="acme")
    await h.settle()
    h.clock.advance(86_400)
    rules = RetentionConfig.model_validate({"days": 30, "institutions": {"beta": {"days": 60}}})
    ran = await _eraser(h, Config()).apply_retention(rules, actor="test")
    assert ran is not None
    runs, removed = ran
    assert (runs, removed["executions"]) == (1, 1)
    with pytest.raises(ExecutionNotFound):
        await h.get(old.id)
    for kept in (short, recent, waiting):  # beta keeps 60 days; the others are recent or live
        assert (await h.get(kept.id)).id == kept.id
    assert await _eraser(h, Config()).apply_retention(RetentionConfig()) is None
