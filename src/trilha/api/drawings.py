"""Flows drawn for the debugger: off the event loop, once per flow version, in bounded time.

Laying out the largest flow validation accepts takes about a second of CPU (see
:mod:`trilha.core.graph`). On the event loop that second would stall every other
request of the process, whoever made them; so ``GET /v1/executions/{id}/graph``
goes through :class:`Drawings`:

- a cache of finished drawings, encoded, per ``(stored flow id, version)``: a
  version never changes once published, and the stored id carries the owner
  (``INSTITUTION/FLOW``), so two tenants' flows of one name never share an entry.
  It is bounded in bytes (``[api] graph_cache_bytes``), least recently used out first;
- on a miss, the flow is parsed, laid out and encoded in a thread. The layout polls
  :meth:`Drawings._stop` every few thousand steps, which sleeps a moment: that hands
  the interpreter lock to the event loop at once, instead of after the switch
  interval (5 ms) at every ``await`` the loop makes meanwhile. The garbage
  collector is paused from the read of the definition to the end of the drawing
  (:func:`_collector_paused`): their hundreds of thousands of objects would set off
  several full collections, each walking the whole heap with the lock held (50 to
  80 ms apiece in a served process on a small machine: the longest stalls of the
  loop), though they make no cycles for it to find;
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
import gc
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from trilha.api.problems import Problem
from trilha.core.flow import NodeTypes, load_flow
from trilha.core.graph import layout
from trilha.errors import LimitExceeded
from trilha.observability.logging import get_logger

log = get_logger("trilha.api")

#: a drawing's key: the stored flow id (with its owner) and the version
Key = tuple[str, int]

#: how long a flow version whose layout ran out of time is refused without trying
REFUSE_SECONDS = 60.0
#: the pause the layout thread takes at each poll, handing the interpreter lock over
YIELD_SECONDS = 0.0001


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
    """Parse, lay out and encode a flow: the whole of a computation, for a thread."""
    with _collector_paused():
        flow = load_flow(definition, node_types)
        members = layout(flow, stop=stop).encode()[1:]
        return Drawing(flow.id, flow.version, flow.start, members)


_paused = 0
_was_enabled = False
_pause_lock = threading.Lock()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collection while any drawing runs (they may overlap);
    what was pending is collected when the last one ends, as usual. Objects freed by
    their reference counts (nearly all of a drawing's) are freed meanwhile."""
    global _paused, _was_enabled
    with _pause_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _pause_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


class Drawings:
    """The process's drawings: cached, computed one at a time per flow version."""

    def __init__(self, *, seconds: float, concurrency: int, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._cache: OrderedDict[Key, Drawing] = OrderedDict()
        self._cached_bytes = 0
        self._running: dict[Key, asyncio.Future[Drawing]] = {}
        self._refused: dict[Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(
        self, key: Key, definition: Callable[[], Awaitable[Any]], node_types: NodeTypes
    ) -> Drawing:
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
            task = asyncio.create_task(self._compute(key, definition, node_types, running))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shielded: a client that goes away does not cancel what others wait for
        return await asyncio.shield(running)

    async def _compute(
        self,
        key: Key,
        definition: Callable[[], Awaitable[Any]],
        node_types: NodeTypes,
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
                # paused from the read on: parsing a 1 MiB definition alone makes tens
                # of thousands of objects, enough to set off a full collection
                with _collector_paused():
                    try:
                        async with asyncio.timeout_at(deadline):
                            raw = await definition()
                    except TimeoutError:
                        log.warning("graph.busy", flowId=key[0], version=key[1])
                        result.set_exception(self._busy())
                        return
                    await self._run(key, raw, node_types, result, deadline)
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
        node_types: NodeTypes,
        result: asyncio.Future[Drawing],
        deadline: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Drawing] = loop.create_future()
        stop = threading.Event()

        def work() -> None:
            begin = time.perf_counter()
            try:
                drawing = draw(raw, node_types, lambda: self._stop(stop))
            except BaseException as exc:  # handed to the loop, which raises it to the waiters
                outcome: tuple[Drawing | None, BaseException | None] = (None, exc)
            else:
                outcome = (drawing, None)
                log.info(
                    "graph.drawn",
                    flowId=key[0],
                    version=key[1],
                    seconds=round(time.perf_counter() - begin, 3),
                    bytes=len(drawing.members),
                )
            # the loop may have closed (the server stopped): then nobody waits
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, *outcome)

        threading.Thread(target=work, name="trilha-graph", daemon=True).start()
        try:
            drawing = await asyncio.wait_for(asyncio.shield(done), deadline - loop.time())
        except asyncio.CancelledError:
            stop.set()  # the thread ends at its next poll
            raise
        except TimeoutError:
            stop.set()
            self._refused[key] = loop.time() + REFUSE_SECONDS
            log.warning("graph.too_slow", flowId=key[0], version=key[1], seconds=self.seconds)
            result.set_exception(self._too_slow(REFUSE_SECONDS))
            # the slot stays taken until the thread has noticed and stopped
            await asyncio.wait([done])
            if not done.cancelled():
                done.exception()
            return
        self._keep(key, drawing)
        result.set_result(drawing)

    @staticmethod
    def _stop(stop: threading.Event) -> bool:
        time.sleep(YIELD_SECONDS)  # the event loop takes the interpreter lock meanwhile
        return stop.is_set()

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


def _settle(
    future: asyncio.Future[Drawing], value: Drawing | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif value is not None:
        future.set_result(value)
