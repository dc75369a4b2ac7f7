"""The event hub over a real SQLite store and a real engine: one poller fans the
trail out to streams, filtered, resumable without loss or repeats, and bounded in
memory whatever a slow client does."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from trilha.api.app import ServeOptions, create_app, state_of
from trilha.api.auth import new_key
from trilha.api.events import (
    Ended,
    EventFilter,
    EventHub,
    Opened,
    Ping,
    StreamItem,
    event_data,
    event_type,
    flow_name,
)
from trilha.channels.memory import MemoryChannel
from trilha.config import Config
from trilha.core.execution import Execution
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.operator import Operator
from trilha.engine.worker import Worker
from trilha.observability.trail import Identity
from trilha.processors.registry import Processors
from trilha.store.base import TrailEvent
from trilha.store.sqlite import SQLiteStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CPF = "123.456.789-09"
#: the harness fixture of tests/conftest.py (an engine over a real store, a fake clock)
Harness = Any


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture
async def hub(harness: Harness) -> AsyncGenerator[EventHub, None]:
    await harness.publish(example("onboarding"))
    await harness.publish(example("faq"))
    made = EventHub(
        harness.store, poll_seconds=0.02, end_linger_seconds=0.1, status_check_seconds=0.1
    )
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


class Reader:
    """Consumes one stream in the background, keeping what it yields."""

    def __init__(self, stream: AsyncGenerator[StreamItem, None]) -> None:
        self.stream = stream
        self.items: list[StreamItem] = []
        self.done = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with aclosing(self.stream) as items:
                async for item in items:
                    self.items.append(item)
        finally:
            self.done.set()

    @property
    def events(self) -> list[TrailEvent]:
        return [i for i in self.items if isinstance(i, TrailEvent)]

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events]

    async def until(self, check: Callable[[Reader], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not check(self):
            assert time.monotonic() < deadline, f"timed out; got {self.items!r}"
            assert not self.done.is_set() or check(self), "the stream ended early"
            await asyncio.sleep(0.005)

    async def opened(self) -> None:
        await self.until(lambda r: any(isinstance(i, Opened) for i in r.items))

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def stream(hub: EventHub, after: int | None = None, ping: float = 60.0, **filters: Any) -> Reader:
    status = filters.pop("status", None)
    return Reader(hub.stream(EventFilter(**filters), after=after, ping_seconds=ping, status=status))


async def trail_ids(store: SQLiteStore, **filters: Any) -> list[int]:
    return [e.id for e in await store.trail_since(0, limit=100_000, **filters)]


async def start(harness: Harness, flow: str, conversation: str, institution: str) -> Execution:
    ex = await harness.start(flow, conversation, institution_id=institution)
    await harness.settle(ex.id)
    return ex


async def caught_up(hub: EventHub, store: SQLiteStore) -> None:
    """The poll loop has handed out every committed line."""
    last = await store.last_trail_id()
    deadline = time.monotonic() + 5
    while hub.position < last:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------------- fan-out


async def test_one_poller_fans_lines_out_to_each_matching_stream(
    hub: EventHub, harness: Harness
) -> None:
    everything = stream(hub)
    await everything.opened()
    a = await start(harness, "onboarding", "conv-a", "inst-1")
    a_only = stream(hub, after=0, execution_id=a.id)
    b = await start(harness, "onboarding", "conv-b", "inst-1")
    b_only = stream(hub, after=0, execution_id=b.id)
    await harness.reply(a.id, "Maria Silva")
    await harness.reply(b.id, "João Souza")

    a_ids = await trail_ids(harness.store, execution_id=a.id)
    b_ids = await trail_ids(harness.store, execution_id=b.id)
    await a_only.until(lambda r: r.ids == a_ids)
    await b_only.until(lambda r: r.ids == b_ids)
    await everything.until(lambda r: r.ids == sorted(a_ids + b_ids))
    assert hub.subscribers == 3
    kinds = {event_type(e.record.message) for e in a_only.events}
    assert kinds == {"state", "node", "message", "log"}
    received = [e for e in a_only.events if e.record.message == "message.received"]
    assert received and event_type(received[0].record.message) == "message"
    for reader in (everything, a_only, b_only):
        await reader.close()
    assert hub.subscribers == 0  # a closed stream leaves nothing behind


async def test_filters_by_tenant_flow_and_status(hub: EventHub, harness: Harness) -> None:
    mine = stream(hub, institution_id="inst-1")
    theirs = stream(hub, institution_id="inst-2")
    faq = stream(hub, flow_id="faq")
    waiting = stream(hub, statuses=frozenset({"waiting_input"}))
    for reader in (mine, theirs, faq, waiting):
        await reader.opened()
    one = await start(harness, "onboarding", "c1", "inst-1")
    two = await start(harness, "faq", "c2", "inst-2")
    await harness.reply(two.id, "pix")  # answered: waits for "solved?" again
    cancelled = await start(harness, "onboarding", "c3", "inst-1")
    await Operator(harness.store, harness.engine).cancel(cancelled.id, reason="test")

    everything = await harness.store.trail_since(0, limit=10_000)
    await caught_up(hub, harness.store)
    await mine.until(lambda r: r.ids == [e.id for e in everything if e.institution_id == "inst-1"])
    await theirs.until(
        lambda r: r.ids == [e.id for e in everything if e.institution_id == "inst-2"]
    )
    await faq.until(lambda r: r.ids == [e.id for e in everything if e.flow_id == "faq"])
    assert {e.record.execution_id for e in mine.events} == {one.id, cancelled.id}
    assert {e.record.execution_id for e in theirs.events} == {two.id}
    # the status filter reads the execution's status as the line is read: the cancelled
    # execution's lines went out while it was waiting, and none after it was cancelled
    await waiting.until(lambda r: bool(r.events))
    assert all(e.status == "waiting_input" for e in waiting.events)
    assert {e.record.execution_id for e in waiting.events} <= {one.id, two.id, cancelled.id}
    cancel_ids = set(await trail_ids(harness.store, execution_id=cancelled.id))
    last_cancel = max(cancel_ids)
    assert last_cancel not in waiting.ids


def test_a_flow_is_matched_by_its_name_or_its_stored_id() -> None:
    assert flow_name("acme/checkout") == "checkout" and flow_name("faq") == "faq"
    line = TrailEvent(1, _record(), "acme", "acme/checkout", "running")
    assert EventFilter(flow_id="checkout").matches(line)
    assert EventFilter(flow_id="acme/checkout").matches(line)
    assert not EventFilter(flow_id="beta/checkout").matches(line)
    assert not EventFilter(institution_id="beta").matches(line)
    assert not EventFilter(statuses=frozenset({"paused"})).matches(line)


def _record() -> Any:
    from trilha.core.execution import LogRecord

    return LogRecord("ex-1", "INFO", "execution.started", 0.0)


# ----------------------------------------------------------------------------------- resume


async def test_resuming_from_an_id_replays_exactly_what_was_missed(
    hub: EventHub, harness: Harness
) -> None:
    ex = await start(harness, "onboarding", "conv-r", "inst-1")
    first = stream(hub, after=0, execution_id=ex.id)
    await first.until(lambda r: len(r.events) >= 3)
    seen = first.ids
    await first.close()
    # while nobody listens the execution moves on
    await harness.reply(ex.id, "Maria Silva")
    await harness.reply(ex.id, CPF)
    again = stream(hub, after=seen[-1], execution_id=ex.id)
    whole = await trail_ids(harness.store, execution_id=ex.id)
    await again.until(lambda r: seen + r.ids == whole)
    assert len(set(seen + again.ids)) == len(seen + again.ids)  # no line twice
    await again.close()


async def test_a_stream_resumed_while_lines_are_written_loses_and_repeats_nothing(
    hub: EventHub, harness: Harness
) -> None:
    """The subscription exists before the replay reads the store: whatever is
    committed during the replay comes either from the store or from the queue."""
    executions = [await start(harness, "onboarding", f"conv-{i}", "inst-1") for i in range(6)]
    live = stream(hub, after=0, institution_id="inst-1")

    async def write() -> None:
        for ex in executions:
            await harness.reply(ex.id, "Maria Silva")
            await asyncio.sleep(0)

    writer = asyncio.create_task(write())
    resumed = stream(hub, after=3, institution_id="inst-1")
    await writer
    whole = await trail_ids(harness.store, institution_id="inst-1")
    await live.until(lambda r: r.ids == whole)
    await resumed.until(lambda r: r.ids == [i for i in whole if i > 3])
    await live.close()
    await resumed.close()


async def test_a_global_stream_without_an_id_starts_now(hub: EventHub, harness: Harness) -> None:
    before = await start(harness, "onboarding", "conv-old", "inst-1")
    await caught_up(hub, harness.store)
    now = stream(hub)
    await now.opened()
    after = await start(harness, "onboarding", "conv-new", "inst-1")
    await now.until(lambda r: bool(r.events) and r.events[-1].record.execution_id == after.id)
    assert before.id not in {e.record.execution_id for e in now.events}
    await now.close()


# ------------------------------------------------------------------------------ slow reader


async def test_a_slow_reader_costs_a_bounded_queue_and_still_gets_every_line(
    harness: Harness,
) -> None:
    await harness.publish(example("onboarding"))
    small = EventHub(harness.store, poll_seconds=0.01, queue_size=5)
    await small.start()
    try:
        items = small.stream(EventFilter(), after=None, ping_seconds=60)
        async with aclosing(items):
            assert isinstance(await anext(items), Opened)
            (sub,) = small.subscriptions()
            # nothing reads the stream while dozens of lines are committed
            for i in range(8):
                await start(harness, "onboarding", f"slow-{i}", "inst-1")
            await caught_up(small, harness.store)
            assert sub.lags >= 1 and sub.high_water <= 5 and sub.pending == 0
            whole = await trail_ids(harness.store)
            assert len(whole) > 5 * 5
            got: list[int] = []
            while len(got) < len(whole):
                item = await asyncio.wait_for(anext(items), 5)
                assert isinstance(item, TrailEvent)
                got.append(item.id)
            assert got == whole  # read back from the store: in order, no gap, no repeat
            # and it follows live lines again afterwards
            late = await start(harness, "onboarding", "late", "inst-1")
            item = await asyncio.wait_for(anext(items), 5)
            assert isinstance(item, TrailEvent) and item.record.execution_id == late.id
    finally:
        await small.stop()


# ------------------------------------------------------------------------- end, ping, close


async def test_an_execution_stream_ends_after_the_execution_ends(
    hub: EventHub, harness: Harness
) -> None:
    ex = await start(harness, "onboarding", "conv-e", "inst-1")
    reader = stream(hub, after=0, execution_id=ex.id, status="waiting_input")
    await reader.until(lambda r: len(r.events) >= 3)
    for text in ("Maria Silva", CPF, "maria@example.com", "yes"):
        await harness.reply(ex.id, text)
    assert (await harness.get(ex.id)).status.value == "completed"
    await asyncio.wait_for(reader.done.wait(), 5)
    assert reader.ids == await trail_ids(harness.store, execution_id=ex.id)
    assert reader.items[-1] == Ended(ex.id, "completed")
    assert "execution.ended" in [e.record.message for e in reader.events[-3:]]
    # an ended execution's history is replayed, then the stream ends at once
    replay = stream(hub, after=0, execution_id=ex.id, status="completed")
    await asyncio.wait_for(replay.done.wait(), 5)
    assert replay.ids == reader.ids and isinstance(replay.items[-1], Ended)


async def test_an_execution_stream_ends_even_when_its_end_wrote_no_line(
    hub: EventHub, harness: Harness
) -> None:
    """Starting a conversation anew with ``replace`` cancels the old execution in the
    store; the old one's stream learns it from the execution's row."""
    old = await start(harness, "onboarding", "conv-x", "inst-1")
    reader = stream(hub, after=0, execution_id=old.id, status="waiting_input")
    await reader.until(lambda r: len(r.events) >= 3)
    new = await harness.start("onboarding", "conv-x", institution_id="inst-1", replace=True)
    assert new.id != old.id and (await harness.get(old.id)).status.value == "cancelled"
    await asyncio.wait_for(reader.done.wait(), 5)
    assert reader.items[-1] == Ended(old.id, "cancelled")


async def test_idle_streams_get_keep_alives_and_end_when_the_hub_closes(
    hub: EventHub, harness: Harness
) -> None:
    reader = stream(hub, ping=0.05)
    await reader.until(lambda r: sum(isinstance(i, Ping) for i in r.items) >= 2)
    hub.close()
    await asyncio.wait_for(reader.done.wait(), 2)
    late = stream(hub)  # a closed hub opens no stream
    await asyncio.wait_for(late.done.wait(), 2)
    assert late.items == []


# ------------------------------------------------------------------- across writers, wake


async def test_lines_written_through_another_store_connection_arrive(
    hub: EventHub, harness: Harness, tmp_path: Path
) -> None:
    """As a worker in another process: its own connection to the same database."""
    other = SQLiteStore(tmp_path / "trilha.db")
    await other.open()
    try:
        engine = Engine(other, processors=Processors.from_entry_points(), clock=harness.clock)
        reader = stream(hub)
        await reader.opened()
        ex = await engine.start(
            "onboarding", institution_id="inst-9", conversation_id="far", contact_id="c-far"
        )
        dispatcher = Dispatcher(other, MemoryChannel(), clock=harness.clock)
        await Worker(engine, dispatcher).run_until_idle(ex.id)
        whole = await trail_ids(other, execution_id=ex.id)
        await reader.until(lambda r: r.ids == whole)
        assert {e.institution_id for e in reader.events} == {"inst-9"}
        await reader.close()
    finally:
        await other.close()


async def test_wake_reads_at_once_instead_of_at_the_next_poll(harness: Harness) -> None:
    await harness.publish(example("onboarding"))
    slow = EventHub(harness.store, poll_seconds=30)
    await slow.start()
    try:
        reader = stream(slow)
        await reader.opened()
        await asyncio.sleep(0.05)  # the loop's first read is done; it now sleeps 30 s
        started = time.monotonic()
        ex = await start(harness, "onboarding", "woken", "inst-1")
        slow.wake()
        await reader.until(lambda r: bool(r.events), within=10)
        assert time.monotonic() - started < 10  # far from the 30 s poll
        assert reader.events[0].record.execution_id == ex.id
        await reader.close()
    finally:
        await slow.stop()


# ------------------------------------------------------------------------------ the data


async def test_event_data_is_the_masked_wire_line_with_the_execution(
    hub: EventHub, harness: Harness
) -> None:
    ex = await start(harness, "onboarding", "conv-d", "inst-1")
    for text in ("Maria Silva", CPF, "maria@example.com"):
        await harness.reply(ex.id, text)
    reader = stream(hub, after=0, execution_id=ex.id)
    whole = await trail_ids(harness.store, execution_id=ex.id)
    await reader.until(lambda r: r.ids == whole)
    identity = Identity.of(await harness.get(ex.id))
    datas = [event_data(e, identity) for e in reader.events]
    for data in datas:
        assert data["executionId"] == ex.id and data["institutionId"] == "inst-1"
        assert data["flowId"] == "onboarding" and data["status"] == "waiting_input"
        assert data["context"]["conversationId"] == "conv-d"
        assert {"timestamp", "level", "message", "context"} <= data.keys()
    text = json.dumps(datas, ensure_ascii=False)
    assert "confirm" in text and "Is this right?" in text
    assert CPF not in text and "12345678909" not in text and "maria@example.com" not in text
    state = next(d for d in datas if d["message"] == "execution.state_changed")
    assert state["context"]["metadata"]["to"] in {"waiting_input", "running"}
    await reader.close()


# ------------------------------------------------------------- over a real socket, served


class Served:
    """The API app served by uvicorn on a free port of 127.0.0.1, in this event loop,
    over the harness's database (its own connection, as another process would have)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.app = create_app(ServeOptions(store_url=f"sqlite:///{db}", workers=0), config=Config())
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Served:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def hub(self) -> EventHub:
        hub = state_of(self.app).hub
        assert hub is not None
        return hub


async def raw_stream(port: int, key: str, path: str) -> tuple[socket.socket, bytes]:
    """A client with a tiny receive buffer that sends the request and reads only the
    response's head: from then on it does not read, like a stalled browser tab."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b": stream open" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        assert chunk, head
        head += chunk
    return sock, head


async def test_a_client_that_stops_reading_holds_a_bounded_queue_and_catches_up(
    harness: Harness, tmp_path: Path
) -> None:
    """Over TCP: the server's send blocks once the socket buffers are full; the lines
    that keep coming overflow the subscription's small queue, which is dropped; when
    the client reads again it gets every line, in order, read back from the store.
    A client that leaves takes its subscription with it."""
    await harness.publish(example("onboarding"))
    key, plain = new_key("inst-1", "viewer", now=time.time())
    await harness.store.create_api_key(key)
    async with Served(tmp_path / "trilha.db") as served:
        served.hub.queue_size = 8  # subscriptions made from now on
        loop = asyncio.get_running_loop()
        sock, received = await raw_stream(served.port, plain, "/v1/events")
        (sub,) = served.hub.subscriptions()
        for i in range(60):
            await start(harness, "onboarding", f"stall-{i}", "inst-1")
        await caught_up(served.hub, harness.store)
        whole = await trail_ids(harness.store)
        assert sub.lags >= 1 and sub.high_water <= 8  # memory did not grow with the backlog

        def ids() -> list[int]:
            return [int(m) for m in re.findall(rb"^id: (\d+)\r?$", received, re.MULTILINE)]

        deadline = time.monotonic() + 10
        while ids() != whole:
            assert time.monotonic() < deadline, (len(ids()), len(whole))
            received += await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        sock.close()
        deadline = time.monotonic() + 5
        while served.hub.subscribers:
            assert time.monotonic() < deadline, "the subscription outlived its client"
            await asyncio.sleep(0.01)
