"""Network hiccups between a worker and PostgreSQL never apply a step twice.

A real TCP proxy on 127.0.0.1 sits between the store and the server; while a
worker runs many executions through it, the proxy cuts every connection at
random moments (the client sees a reset mid-query, mid-transaction or while
waiting for COMMIT's answer, so it cannot know whether the commit landed). The
worker backs off, renews its lease identity (freeing what it held) and claims again;
each execution must end with exactly its messages, in order, one checkpoint
per step, and the invariant checker must find nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import pytest

from pgcluster import PgCluster
from trilha.channels.memory import MemoryChannel
from trilha.config import Config, EngineConfig, LoggingConfig
from trilha.core.flow import load_flow
from trilha.engine.clock import SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.observability.checker import check_store
from trilha.processors.registry import Processors
from trilha.store.postgres import PostgresStore

pytestmark = pytest.mark.slow

EXECUTIONS = 60
LEASE = 30.0
TEXTS = [f"message {i}" for i in range(1, 7)]
FLOW = {
    "id": "chatty",
    "name": "Six messages and some arithmetic",
    "start": "n0",
    "nodes": [
        *[
            node
            for i, text in enumerate(TEXTS)
            for node in (
                {"id": f"n{2 * i}", "type": "message", "text": text, "next": f"n{2 * i + 1}"},
                {
                    "id": f"n{2 * i + 1}",
                    "type": "set",
                    "variables": {f"v{i}": i},
                    "next": f"n{2 * i + 2}",
                },
            )
        ],
        {"id": f"n{2 * len(TEXTS)}", "type": "end"},
    ],
}


class Proxy:
    """Forwards 127.0.0.1:port to the server; :meth:`cut` resets every open connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.cuts = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.pairs.add(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    def cut(self) -> None:
        for down, up in list(self.pairs):
            down.transport.abort()
            up.transport.abort()
        self.cuts += 1

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def database(postgres_cluster: PgCluster) -> AsyncIterator[str]:
    name = f"hiccups_{random.randrange(1 << 30)}"
    await postgres_cluster.create_database_async(name)
    store = PostgresStore(postgres_cluster.url(name))
    await store.migrate()
    try:
        yield name
    finally:
        await postgres_cluster.drop_database_async(name)


async def test_cut_connections_never_apply_a_step_twice(
    postgres_cluster: PgCluster, database: str
) -> None:
    proxy = Proxy(postgres_cluster.port)
    await proxy.start()
    url = postgres_cluster.url(database).replace(f":{postgres_cluster.port}/", f":{proxy.port}/")
    store = PostgresStore(url, pool_max=6, command_timeout=5)
    await store.open()
    config = Config(
        engine=EngineConfig(lease_seconds=LEASE, poll_interval_seconds=0.05, batch_size=16),
        logging=LoggingConfig(level="OFF"),
    )
    processors = Processors.from_entry_points()
    engine = Engine(store, processors=processors, config=config, clock=SystemClock())
    channel = MemoryChannel()
    dispatcher = Dispatcher(store, channel, dispatcher_id=f"dispatch-{engine.worker_id}")
    worker = Worker(engine, dispatcher, max_backoff_seconds=0.3)
    flow = load_flow(FLOW, processors.node_types)
    await engine.publish(flow)
    ids = [
        (
            await engine.start(
                "chatty", conversation_id=f"c{i}", institution_id="inst-1", contact_id=f"p{i}"
            )
        ).id
        for i in range(EXECUTIONS)
    ]

    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_forever(stop))

    async def done() -> bool:
        with contextlib.suppress(Exception):
            ended = await store.count_by_status("inst-1")
            pending = (await store.queue_stats(time.time())).pending_outbox
            return ended.get("completed", 0) == EXECUTIONS and pending == 0
        return False

    rng = random.Random(7)
    deadline = time.monotonic() + 120
    last_cut = time.monotonic()
    try:
        while not await done():
            assert time.monotonic() < deadline, f"not done after {proxy.cuts} cuts"
            await asyncio.sleep(rng.uniform(0.005, 0.08))
            if proxy.cuts < 40:
                proxy.cut()
                last_cut = time.monotonic()
        settled = time.monotonic() - last_cut
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
    assert proxy.cuts >= 10  # the hiccups happened while the work ran
    # what a cut left leased (a step, a claim or a delivery whose answer was lost) was
    # freed when the worker renewed its identity, not after the 30 s leases
    assert settled < LEASE / 2, settled

    retaken = 0
    for execution_id in ids:
        retaken += sum(r.message == "execution.taken_over" for r in await store.logs(execution_id))
        ex = await store.get_execution(execution_id)
        assert ex.status.value == "completed", execution_id
        assert [m.text for m in await store.outbox_for(execution_id)] == TEXTS
        seqs = [c.seq for c in await store.checkpoints(execution_id)]
        assert seqs == list(range(1, len(seqs) + 1)), execution_id
    # steps cut mid-commit were taken up again under the worker's new identity
    assert retaken > 0
    report = await check_store(store, now=time.time())
    assert report.checked == EXECUTIONS
    assert report.errors == 0, report
    await store.close()
    await proxy.close()
