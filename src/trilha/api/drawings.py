"""Flows drawn for the debugger: off the event loop, once per flow version, in bounded time.

Laying out the largest flow validation accepts takes about a second of CPU (see
:mod:`trilha.core.graph`). On the event loop that second would stall every other
request of the process, whoever made them; so ``GET /v1/executions/{id}/graph``
goes through :class:`Drawings`:

- a cache of finished drawings, encoded, per ``(stored flow id, version)``: a
  version never changes once published, and the stored id carries the owner
  (``INSTITUTION/FLOW``), so two tenants' flows of one name never share an entry.
  It is bounded in bytes (``[api] graph_cache_bytes``), least recently used out first;
- on a miss, the flow is parsed, laid out and encoded in a separate process
  (:func:`_draw_in_child`, a pool of ``[api] graph_concurrency`` workers started
  when the debugger's page is served, or else at the first drawing). A thread would
  share the interpreter with the event loop: one institution redrawing large flows
  took two thirds of the replies of another
  (``bench/neighbours.py``); a process takes its own core and none of the loop's
  time, and its garbage collections stall nothing of the server's. The definition
  goes there as JSON and the drawing comes back as bytes, so neither side spends
  long converting;
- requests for a drawing being computed wait for that computation (single flight),
  and at most ``[api] graph_concurrency`` computations run at once;
- each computation has ``[api] graph_seconds``, counted from the request that
  started it and including the wait for a slot. Past it the layout is told to stop
  and the requests answer 503 (``kind: limit``) with ``Retry-After``; a flow version
  whose layout ran out of time answers that at once for :data:`REFUSE_SECONDS`, so
  a flow too large for the budget costs one computation per period, not one per
  request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from trilha.api.problems import Problem
from trilha.core.flow import NodeTypes, load_flow
from trilha.core.graph import layout
from trilha.errors import FlowError, LimitExceeded
from trilha.observability.logging import get_logger
from trilha.processors.registry import Processors

log = get_logger("trilha.api")

#: a drawing's key: the stored flow id (with its owner) and the version
Key = tuple[str, int]

#: how long a flow version whose layout ran out of time is refused without trying
REFUSE_SECONDS = 60.0
#: how long past its deadline a drawing process may take to say it stopped
LATE_SECONDS = 2.0
#: how often a drawing process checks that the server that started it still runs
PARENT_CHECK_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Drawing:
    """A flow version laid out: ``members`` is the layout's JSON object without its
    opening brace, ready to follow an execution's ids (megabytes: copied once)."""

    flow_id: str
    version: int
    start: str
    members: bytes

    def response_body(self, execution_id: str) -> bytes:
        """The graph answer for one execution: its ids, then the layout's fields."""
        head = orjson.dumps(
            {
                "executionId": execution_id,
                "flowId": self.flow_id,
                "flowVersion": self.version,
                "start": self.start,
            }
        )
        return b"".join([head[:-1], b",", self.members])


def draw(definition: Any, node_types: NodeTypes, stop: Callable[[], bool]) -> Drawing:
    """Parse, lay out and encode a flow: the whole of a computation."""
    flow = load_flow(definition, node_types)
    members = layout(flow, stop=stop).encode()[1:]
    return Drawing(flow.id, flow.version, flow.start, members)


_child_types: NodeTypes | None = None


def _child_setup(parent: int) -> None:
    """A drawing process's start: it writes nothing to the server's output (its pipes
    would stay open after the server died), and it ends when the server does, however
    the server ended (SIGKILL included), instead of living on as an orphan."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="trilha-graph-parent", daemon=True).start()


def _child_node_types() -> NodeTypes:
    """The node types of the installed processors, loaded once per drawing process."""
    global _child_types
    if _child_types is None:
        _child_types = Processors.from_entry_points().node_types
    return _child_types


def _draw_in_child(definition: bytes, deadline: float) -> tuple[str, Any]:
    """A drawing, in a process of the pool: ``("ok", drawing)``, or the failure as
    ``(kind, message)`` (an exception whose constructor takes more than a message
    would not cross the process boundary intact). ``deadline`` is on the monotonic
    clock, which every process of the machine shares."""
    try:
        drawing = draw(
            orjson.loads(definition), _child_node_types(), lambda: time.monotonic() >= deadline
        )
    except LimitExceeded as exc:
        return "limit", str(exc)
    except FlowError as exc:
        return "flow", str(exc)
    return "ok", drawing


class Drawings:
    """The process's drawings: cached, computed one at a time per flow version."""

    def __init__(self, *, seconds: float, concurrency: int, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._pool: ProcessPoolExecutor | None = None
        self._cache: OrderedDict[Key, Drawing] = OrderedDict()
        self._cached_bytes = 0
        self._running: dict[Key, asyncio.Future[Drawing]] = {}
        self._refused: dict[Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: Key, definition: Callable[[], Awaitable[Any]]) -> Drawing:
        """The drawing of ``key``, whose flow definition ``definition()`` reads."""
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        self._check_refused(key)
        running = self._running.get(key)
        if running is None:
            running = asyncio.get_running_loop().create_future()
            self._running[key] = running
            task = asyncio.create_task(self._compute(key, definition, running))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shielded: a client that goes away does not cancel what others wait for
        return await asyncio.shield(running)

    async def _compute(
        self,
        key: Key,
        definition: Callable[[], Awaitable[Any]],
        result: asyncio.Future[Drawing],
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                log.warning("graph.busy", flowId=key[0], version=key[1], seconds=self.seconds)
                result.set_exception(self._busy())
                return
            try:
                try:
                    async with asyncio.timeout_at(deadline):
                        raw = await definition()
                except TimeoutError:
                    log.warning("graph.busy", flowId=key[0], version=key[1])
                    result.set_exception(self._busy())
                    return
                await self._run(key, raw, result, deadline)
            finally:
                self._slots.release()
        except asyncio.CancelledError:  # the server is stopping: so are the waiters
            result.cancel()
            raise
        except Exception as exc:  # the waiters get it (a 404, a 422...)
            if not result.done():
                result.set_exception(exc)
        finally:
            del self._running[key]
            if result.done() and not result.cancelled():
                result.exception()  # retrieved: no "never retrieved" warning without waiters

    async def _run(
        self,
        key: Key,
        raw: Any,
        result: asyncio.Future[Drawing],
        deadline: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        encoded = orjson.dumps(raw)
        done = loop.run_in_executor(self._processes(), _draw_in_child, encoded, deadline)
        try:
            # a moment past the deadline: the drawing stops itself at it, and says so
            outcome, value = await asyncio.wait_for(
                asyncio.shield(done), deadline - loop.time() + LATE_SECONDS
            )
        except TimeoutError:
            outcome, value = "limit", "no answer from the drawing process in time"
            await asyncio.wait([done])  # the slot stays taken until the process is free
        if outcome == "limit":
            self._refused[key] = loop.time() + REFUSE_SECONDS
            log.warning("graph.too_slow", flowId=key[0], version=key[1], seconds=self.seconds)
            result.set_exception(self._too_slow(REFUSE_SECONDS))
            return
        if outcome == "flow":
            raise FlowError(str(value))
        drawing: Drawing = value
        log.info(
            "graph.drawn",
            flowId=key[0],
            version=key[1],
            seconds=round(loop.time() - begin, 3),
            bytes=len(drawing.members),
        )
        self._keep(key, drawing)
        result.set_result(drawing)

    def _processes(self) -> ProcessPoolExecutor:
        """The drawing processes, started by :meth:`warm` or the first drawing (a
        served process nobody draws with starts none). Spawned, not forked: the server
        has threads."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._concurrency,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_setup,
                initargs=(os.getpid(),),
            )
        return self._pool

    def warm(self) -> None:
        """Start the drawing processes now, loaded, if they are not running (a page
        that will ask for drawings opened): the first drawing then waits for none."""
        if self._pool is not None:
            return
        for _ in range(self._concurrency):
            started = self._processes().submit(_child_node_types)
            started.add_done_callback(lambda done: done.exception())

    def close(self) -> None:
        """Stop the drawing processes (the server is stopping): a drawing under way is
        not waited for."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()

    def _keep(self, key: Key, drawing: Drawing) -> None:
        size = len(drawing.members)
        if size > self.max_bytes:
            return
        self._cache[key] = drawing
        self._cached_bytes += size
        while self._cached_bytes > self.max_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old.members)

    def _check_refused(self, key: Key) -> None:
        now = asyncio.get_running_loop().time()
        for old in [k for k, until in self._refused.items() if until <= now]:
            del self._refused[old]
        until = self._refused.get(key)
        if until is not None:
            raise self._too_slow(until - now)

    def _too_slow(self, retry_after: float) -> Problem:
        return _limit(
            f"drawing this flow took longer than {self.seconds:g} s, the limit"
            " (api.graph_seconds); it is not tried again before Retry-After",
            retry_after,
            self.seconds,
        )

    def _busy(self) -> Problem:
        return _limit(
            f"drawing this flow could not start within {self.seconds:g} s, the limit"
            " (api.graph_seconds): other flows were being drawn, or the store was slow;"
            " retry shortly",
            self.seconds,
            self.seconds,
        )


def _limit(detail: str, retry_after: float, seconds: float) -> Problem:
    return Problem(
        503,
        detail,
        kind=LimitExceeded.code,
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        extra={"kind": "limit", "limit": seconds, "setting": "api.graph_seconds"},
    )
