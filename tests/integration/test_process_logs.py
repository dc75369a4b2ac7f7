"""The process log pipeline (structlog): the DESIGN §5 wire shape, the trail echoed
after each commit, levels global and per institution, the console form, the rotating
file, what the store keeps (``store_level``) and the trail's retention."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trilha.config import Config, LoggingConfig
from trilha.engine.sweeper import Sweeper
from trilha.observability.logging import configure, get_logger

SCHEDULING = Path(__file__).resolve().parents[2] / "examples" / "scheduling.json"
WIRE_KEYS = {"timestamp", "level", "executionId", "message", "context"}
CONTEXT_KEYS = {"institutionId", "conversationId", "contactId"}

CHAT = {
    "id": "chat",
    "start": "hi",
    "nodes": [
        {"id": "hi", "type": "message", "text": "Olá! Qual é o seu e-mail?", "next": "ask"},
        {"id": "ask", "type": "question", "text": "E-mail?", "variable": "email", "next": "bye"},
        {"id": "bye", "type": "message", "text": "Obrigado, {{email}}.", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}


def _check_wire(line: dict[str, Any]) -> None:
    """Exactly the wire shape: the fixed keys, optional node fields, a context with
    the identity and only duration/error/metadata besides."""
    assert WIRE_KEYS <= set(line) <= WIRE_KEYS | {"nodeId", "nodeType"}
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert line["level"] in {"DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"}
    context = line["context"]
    assert CONTEXT_KEYS <= set(context) <= CONTEXT_KEYS | {"duration", "error", "metadata"}
    if "error" in context:
        assert set(context["error"]) == {"type", "message", "stack"}


#: the contact's reply: personal data of each kind, formatted as people type it
REPLY = "ana.souza@example.com, CPF 123.456.789-09, CNPJ 12.345.678/0001-95, (11) 98765-4321"
#: what of it must never reach stdout, and the masked forms that must (masked, not dropped)
CLEAR = ["ana.souza@example.com", "123.456.789-09", "12.345.678/0001-95", "98765-4321"]
MASKED_FORMS = ["a***@***.com", "***.***.***-**", "**.***.***/****-**", "(**) *****-**21"]


async def _chat(h: Any, institution: str = "inst-1", conversation: str = "c1") -> str:
    await h.publish(CHAT)
    ex = await h.start("chat", conversation, institution_id=institution)
    await h.settle()
    await h.reply(ex.id, REPLY)
    return str(ex.id)


def test_a_process_event_has_the_wire_shape(process_log: Any) -> None:
    """Fields land where the wire puts them; the rest goes into metadata; an exception
    becomes ``{type, message, stack}``."""
    log = get_logger("trilha.worker")
    log.critical(
        "store.unavailable", workerId="w-1", executionId="e-1", institutionId="i-1", code="locked"
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("worker.crashed")
    first, second = process_log.lines()
    for line in (first, second):
        _check_wire(line)
    assert first["level"] == "CRITICAL" and first["message"] == "store.unavailable"
    assert first["executionId"] == "e-1"
    assert first["context"]["institutionId"] == "i-1"
    assert first["context"]["metadata"] == {
        "workerId": "w-1",
        "code": "locked",
        "logger": "trilha.worker",
    }
    assert second["level"] == "ERROR" and second["executionId"] is None
    error = second["context"]["error"]
    assert error["type"] == "RuntimeError" and error["message"] == "boom"
    assert "Traceback" in error["stack"] and "raise RuntimeError" in error["stack"]


async def test_the_trail_is_echoed_at_info(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    """At INFO stdout tells the execution's story (start, state changes, what was sent
    and received, masked, the end) without node entry/exit; every line is wire-shaped."""
    configure(LoggingConfig(level="INFO", format="json"), stream=process_log.stream)
    h = make_harness()
    execution_id = await _chat(h)
    lines = process_log.lines()
    for line in lines:
        _check_wire(line)
    ours = [line for line in lines if line["executionId"] == execution_id]
    messages = [line["message"] for line in ours]
    assert messages[0] == "execution.started"
    # the last message is delivered after the end that queued it
    told = [m for m in messages if m != "message.delivered"]
    assert told[-1] == "execution.ended"
    assert "node.entered" not in messages and "node.left" not in messages
    assert messages.count("message.queued") == 3  # greeting, question, thanks
    assert messages.count("message.delivered") == 3
    assert messages.count("message.received") == 1
    assert "execution.state_changed" in messages
    assert all(line["context"]["institutionId"] == "inst-1" for line in ours)
    text = process_log.text()
    assert [clear for clear in CLEAR if clear in text] == []
    received = next(line for line in ours if line["message"] == "message.received")
    said = received["context"]["metadata"]["text"]
    assert [form for form in MASKED_FORMS if form not in said] == []  # masked, not dropped


async def test_debug_adds_node_entry_and_exit_with_durations(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    h = make_harness()
    execution_id = await _chat(h)
    ours = [line for line in process_log.lines() if line["executionId"] == execution_id]
    left = [line for line in ours if line["message"] == "node.left"]
    entered = [line for line in ours if line["message"] == "node.entered"]
    assert [line["nodeId"] for line in entered] == ["hi", "ask", "ask", "bye", "end"]
    assert len(left) == len(entered)
    assert all(isinstance(line["context"]["duration"], float) for line in left)
    assert all(line["nodeType"] for line in left)


async def test_levels_per_institution(make_harness: Callable[..., Any], process_log: Any) -> None:
    """The global level is ERROR, but one institution is watched at DEBUG: only its
    executions show on stdout."""
    configure(
        LoggingConfig(level="ERROR", institutions={"watched": "debug"}, format="json"),
        stream=process_log.stream,
    )
    h = make_harness()
    quiet = await _chat(h, "quiet", "c1")
    watched = await _chat(h, "watched", "c2")
    get_logger("trilha.test").info("noise", institutionId="quiet")
    get_logger("trilha.test").info("signal", institutionId="watched")
    seen = {line["executionId"] for line in process_log.lines()}
    assert watched in seen and quiet not in seen
    assert "signal" in process_log.messages() and "noise" not in process_log.messages()


async def test_off_prints_nothing(make_harness: Callable[..., Any], process_log: Any) -> None:
    configure(LoggingConfig(level="OFF"), stream=process_log.stream)
    h = make_harness()
    await _chat(h)
    get_logger("trilha.test").critical("still.quiet")
    assert process_log.text() == ""


async def test_console_form_is_one_readable_line_each(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    configure(LoggingConfig(level="INFO", format="console"), stream=process_log.stream)
    h = make_harness()
    await _chat(h)
    text = process_log.text()
    assert not text.lstrip().startswith("{")
    lines = text.splitlines()
    assert any(" INFO  hi execution.started " in line for line in lines), lines[:3]
    assert any("message.received" in line and "text=" in line for line in lines)
    assert "ana.souza@example.com" not in text


async def test_rotating_file_keeps_json_lines(
    make_harness: Callable[..., Any], process_log: Any, tmp_path: Path
) -> None:
    """The file gets JSON lines (even when stdout is in console form) and rotates at
    ``file_max_bytes`` keeping ``file_backups`` old files."""
    path = tmp_path / "logs" / "trilha.log"
    configure(
        LoggingConfig(
            level="DEBUG",
            format="console",
            file=str(path),
            file_max_bytes=4_096,
            file_backups=2,
        ),
        stream=process_log.stream,
    )
    h = make_harness()
    for i in range(6):
        await _chat(h, conversation=f"c{i}")
    logging.getLogger("trilha").handlers[-1].flush()
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["trilha.log", "trilha.log.1", "trilha.log.2"]
    for file in files:
        assert file.stat().st_size <= 4_096 + 2_048  # one line may cross the limit
        for raw in file.read_text(encoding="utf-8").splitlines():
            _check_wire(json.loads(raw))


def test_a_stdlib_record_under_trilha_is_shaped_too(process_log: Any) -> None:
    logging.getLogger("trilha.plugin").warning("plugin says hi to +5511987654321")
    (line,) = process_log.lines()
    _check_wire(line)
    assert line["level"] == "WARN"
    assert "+5511987654321" not in line["message"]
    assert line["context"]["metadata"]["logger"] == "trilha.plugin"


def test_the_postgres_drivers_errors_join_the_process_log(process_log: Any) -> None:
    """asyncpg reports through the stdlib logger, with tracebacks: an error becomes one
    JSON line like ours (its stack inside), nothing bare on stderr; its warnings (one per
    reconnection attempt while the store is away: trilha says that once) stay out."""
    pool = logging.getLogger("asyncpg.pool")
    try:
        raise ConnectionRefusedError("[Errno 111] Connect call failed")
    except ConnectionRefusedError:
        pool.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
        pool.error("Unexpected error while closing a connection", exc_info=True)
    (line,) = process_log.lines()
    _check_wire(line)
    assert line["level"] == "ERROR"
    assert line["message"] == "Unexpected error while closing a connection"
    assert line["context"]["metadata"]["logger"] == "asyncpg.pool"
    assert "ConnectionRefusedError" in line["context"]["error"]["stack"]


async def test_store_level_keeps_node_lines_out_of_the_store(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    """``store_level = INFO`` keeps node entry/exit out of the trail, yet stdout at
    DEBUG still shows them."""
    h = make_harness(Config(logging=LoggingConfig(store_level="INFO")))
    execution_id = await _chat(h)
    stored = {r.message for r in await h.store.logs(execution_id)}
    assert "node.entered" not in stored and "execution.ended" in stored
    assert "node.entered" in process_log.messages()


async def test_retention_purges_only_old_ended_trails(make_harness: Callable[..., Any]) -> None:
    h = make_harness(Config(logging=LoggingConfig(retention_days=0)))  # the worker keeps all
    ended = await _chat(h, conversation="old")
    waiting_flow = {**CHAT, "id": "waits"}
    await h.publish(waiting_flow)
    waiting = await h.start("waits", "still-asking")
    await h.settle()
    h.clock.advance(31 * 86_400)
    recent = await _chat(h, conversation="new")
    sweeper = Sweeper(h.store, h.clock, retention_seconds=30 * 86_400)
    purged = await sweeper.purge_trails(batch=3)
    assert purged > 0
    assert await h.store.logs(ended) == []
    assert await h.store.logs(waiting.id)  # still live: its whole trail stays
    assert await h.store.logs(recent)  # ended, but within the retention
    assert await sweeper.purge_trails() == 0
    assert await Sweeper(h.store, h.clock).purge_trails() == 0  # 0 keeps trails forever


async def test_the_worker_applies_the_retention(make_harness: Callable[..., Any]) -> None:
    """The worker's sweep purges by ``logging.retention_days`` (30 by default)."""
    h = make_harness()
    ended = await _chat(h, conversation="old")
    h.clock.advance(29 * 86_400)
    await h.settle()
    assert await h.store.logs(ended)
    h.clock.advance(2 * 86_400)
    await h.settle()
    assert await h.store.logs(ended) == []


@pytest.mark.parametrize("level", ["warning", "Warn", "WARN"])
def test_levels_are_read_forgivingly(level: str) -> None:
    assert LoggingConfig(level=level).level == "WARN"  # type: ignore[arg-type]


@pytest.mark.parametrize("declared", [False, True])
async def test_a_flow_calling_an_undeclared_dependency_is_logged_at_publish(
    process_log: Any, tmp_path: Path, declared: bool
) -> None:
    """The scheduling example calls 'agenda' from two nodes: without it in the
    configuration each is one WARN line when the flow is published, not a surprise when
    a contact reaches the node; declared, nothing is said."""
    from trilha.channels.memory import MemoryChannel
    from trilha.flowfiles import load_flow_file
    from trilha.runtime import publish_all, runtime

    config = Config.model_validate(
        {"dependencies": {"agenda": {"base_url": "http://127.0.0.1:9"}}} if declared else {}
    )
    flow = load_flow_file(SCHEDULING)
    store = f"sqlite:///{tmp_path / 'trilha.db'}"
    async with runtime(store, None, config=config, channel=MemoryChannel()) as rt:
        await publish_all(rt, [flow])
    warned = [
        line for line in process_log.lines() if line["message"] == "flow.dependency_undeclared"
    ]
    if declared:
        assert warned == []
        return
    assert [(w["level"], w["nodeId"]) for w in warned] == [
        ("WARN", "fetch_slots"),
        ("WARN", "book"),
    ]
    for w in warned:
        _check_wire(w)
        assert w["context"]["metadata"]["flowId"] == "scheduling"
        assert w["context"]["metadata"]["dependency"] == "agenda"
