"""Live events: one poller per process tails the store's trail and fans it out.

Why tail the store rather than hook the engine: the trail (``execution_logs``)
already holds every state change, node entry and exit, message and log line,
each with a global, monotonic id; and a worker in *another* process (``trilha
worker``, a second ``serve``) commits into the same store. Reading the store is
the one way an API process sees all of it. So :class:`EventHub` runs ONE poll
loop per process (``trail_since(position)``), whatever the number of clients,
and hands each new line to the subscriptions whose filter it passes. It polls
every ``poll_seconds`` when idle and within ``min_poll_seconds`` after lines
arrived or :meth:`EventHub.wake` was called (work is under way), backing off by
doubling; with no subscriber it only follows the newest id.

Nothing is lost or repeated across a reconnection: a client resumes from the
last id it saw (SSE ``Last-Event-ID``); :meth:`EventHub.stream` registers its
subscription *first*, replays the lines after that id from the store, then
follows the live ones, skipping any id it already sent. A slow client never
makes memory grow: its queue is bounded, and when it overflows the queue is
dropped and the stream reads the missed lines back from the store at the
client's own pace (the same replay as a reconnection).

This relies on one property of the store: trail ids become visible in
increasing order (a reader never sees id ``n + 1`` committed while ``n`` is
still to come). SQLite has one writer at a time, so it holds; PostgreSQL, with
concurrent writers, keeps it by reading only up to the newest id below which
every transaction has ended (``PostgresStore.trail_since``). So a stream works
the same whichever process, on whichever machine, ran the step.

Every stream is a connection and a file descriptor held open for as long as the
client likes, so :class:`StreamGate` bounds them: ``[api] max_streams_per_key`` per
API key and ``[api] max_streams`` per process (never more than half the process's
file descriptors), beyond which a new stream is refused (429). It also re-reads,
every :data:`KEY_RECHECK_SECONDS`, each key that holds streams open, and ends those
streams once the key is revoked or no longer what it was (its tenant or role), so
a revoked key stops reading within seconds rather than for as long as it stays
connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from trilha.core.states import ExecutionStatus
from trilha.errors import CorruptedRecord, ExecutionNotFound, StoreUnavailable, TrilhaError
from trilha.observability.logging import get_logger
from trilha.observability.trail import Identity, wire
from trilha.store.base import Store, TrailEvent

if TYPE_CHECKING:
    from trilha.api.auth import Principal

log = get_logger("trilha.api.events")
T = TypeVar("T")

#: the SSE ``event:`` of a trail line, by the line's message; every other line is ``log``
EVENT_TYPES: dict[str, str] = {
    "execution.state_changed": "state",
    "node.entered": "node",
    "node.left": "node",
    "message.queued": "message",
    "message.received": "message",
    "message.delivered": "message",
    "message.delivery_failed": "message",
    "message.dead": "message",
    "message.deferred": "message",
    "message.redriven": "message",
    "message.status": "message",
}
LOG = "log"
#: the last event of an execution's stream: it reached a terminal state (no ``id:``)
END = "end"

#: the longest the poll loop sleeps (idle); right after activity it reads again within
#: MIN_POLL_SECONDS, backing off by doubling
POLL_SECONDS = 0.1
MIN_POLL_SECONDS = 0.005
BATCH = 500
QUEUE_SIZE = 1024
#: how long an execution's stream stays open once the execution ended and nothing
#: more arrives: lines written just after the end (a late delivery) still go out
END_LINGER_SECONDS = 1.0
#: how long a stream that cannot send (its client stopped reading) may hold the
#: server's shutdown before it is cut
CLOSE_GRACE_SECONDS = 1.0
#: how often an idle execution stream reads its execution's status: an end that wrote
#: no trail line (a conversation's execution replaced by a new one) still ends it
STATUS_CHECK_SECONDS = 5.0
#: how long :meth:`EventHub.stop` lets a store read in flight finish
STOP_SECONDS = 5.0
_IDENTITIES = 4096
_BACKOFF_MAX = 5.0
#: how often the keys holding streams open are read again from the store: a revoked
#: key's streams end within this (plus one store read), well inside 5 s
KEY_RECHECK_SECONDS = 2.0
#: the share of the process's file descriptors open streams may hold at most; the rest
#: serve ordinary requests, the store, outbound calls and the log file
STREAM_FD_SHARE = 0.5


def event_type(message: str) -> str:
    """The SSE event type of a trail line (``state``, ``node``, ``message``, ``log``)."""
    return EVENT_TYPES.get(message, LOG)


def _terminal(status: str | None) -> bool:
    try:
        return status is not None and ExecutionStatus(status).terminal
    except ValueError:
        return False


def flow_name(stored_flow_id: str) -> str:
    """A flow id without its owner: an institution's own flows are stored as
    ``INSTITUTION/FLOW`` (see ``routes/flows.py``) and named ``FLOW`` by it."""
    return stored_flow_id.partition("/")[2] or stored_flow_id


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which lines a stream carries; ``None`` fields do not narrow."""

    execution_id: str | None = None
    #: the tenant a key sees; ``None`` for an admin key (every institution)
    institution_id: str | None = None
    #: the flow, by its name (``checkout``) or its stored id (``acme/checkout``)
    flow_id: str | None = None
    #: the execution's status when the line is read
    statuses: frozenset[str] | None = None

    def matches(self, event: TrailEvent) -> bool:
        if self.execution_id is not None and event.record.execution_id != self.execution_id:
            return False
        if self.institution_id is not None and event.institution_id != self.institution_id:
            return False
        if self.flow_id is not None and self.flow_id not in (
            event.flow_id,
            flow_name(event.flow_id),
        ):
            return False
        return self.statuses is None or event.status in self.statuses


class Signal(enum.Enum):
    """What a subscription says besides a line."""

    #: its queue overflowed and was dropped: read the missed lines from the store
    LAGGED = "lagged"
    #: the hub closed (the server is stopping)
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Opened:
    """The subscription is registered: from here on nothing the stream owes is lost."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Nothing happened for ``ping_seconds``: time for a keep-alive comment."""


@dataclass(frozen=True, slots=True)
class Ended:
    """The execution reached a terminal state and its last lines went out."""

    execution_id: str
    status: str


StreamItem = TrailEvent | Opened | Ping | Ended


class Subscription:
    """One stream's bounded queue of live lines, filled by the hub's poll loop."""

    def __init__(self, flt: EventFilter, floor: int, capacity: int) -> None:
        self.filter = flt
        #: the hub's position when this subscribed: every line above it comes through
        #: this queue (unless it lags), every line at or below it is the store's to replay
        self.floor = floor
        self.capacity = capacity
        self.lagged = False
        self.closed = False
        #: how many times the queue overflowed (and the stream read the store instead)
        self.lags = 0
        #: the most lines the queue ever held: never above ``capacity``
        self.high_water = 0
        self._pending: deque[TrailEvent] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: TrailEvent) -> None:
        """Queue a live line (from the poll loop; never blocks, never grows unbounded)."""
        if self.closed or self.lagged or event.id <= self.floor or not self.filter.matches(event):
            return
        if len(self._pending) >= self.capacity:
            # the client reads slower than lines arrive: drop the queue, not the lines;
            # the stream reads them back from the store (see EventHub.stream)
            self._pending.clear()
            self.lagged = True
            self.lags += 1
            log.debug("events.subscriber_lagged", capacity=self.capacity)
        else:
            self._pending.append(event)
            self.high_water = max(self.high_water, len(self._pending))
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._pending.clear()
        self._ready.set()

    def resume(self, position: int) -> int:
        """Leave the lagged state: lines above ``position`` (the hub's, read in the same
        tick) come through the queue again; returns it as the store replay's end."""
        self.lagged = False
        self._pending.clear()
        self.floor = position
        return position

    async def next(self, within: float) -> TrailEvent | Signal | None:
        """The next live line, a :class:`Signal`, or ``None`` after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.closed:
                return Signal.CLOSED
            if self.lagged:
                return Signal.LAGGED
            if self._pending:
                return self._pending.popleft()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._ready.clear()  # nothing pending: no await since the checks above
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), remaining)

    @property
    def pending(self) -> int:
        return len(self._pending)


class EventHub:
    """The process's one reader of the trail, fanning new lines out to subscriptions."""

    def __init__(
        self,
        store: Store,
        *,
        poll_seconds: float = POLL_SECONDS,
        batch: int = BATCH,
        queue_size: int = QUEUE_SIZE,
        end_linger_seconds: float = END_LINGER_SECONDS,
        status_check_seconds: float = STATUS_CHECK_SECONDS,
        min_poll_seconds: float = MIN_POLL_SECONDS,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.queue_size = queue_size
        self.end_linger_seconds = end_linger_seconds
        self.status_check_seconds = status_check_seconds
        self.min_poll_seconds = min(min_poll_seconds, poll_seconds)
        #: the id of the last line the poll loop handed out (or skipped with nobody
        #: listening): subscriptions made now get every line above it
        self.position = 0
        self.closed = asyncio.Event()
        self._broad: set[Subscription] = set()
        self._by_execution: dict[str, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._identities: OrderedDict[str, Identity] = OrderedDict()
        #: when the current store outage began (monotonic), None while the store answers
        self._outage_since: float | None = None

    # lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Begin at the newest line: a hub serves what happens from now (and the store
        replays the rest to a stream that asks for it)."""
        self.position = await self.store.last_trail_id()
        self._task = asyncio.create_task(self._run(), name="trilha-event-hub")

    def close(self) -> None:
        """End every stream (they finish their current line) and refuse new ones.
        Safe to call from a signal hook, twice, or before :meth:`start`."""
        if self.closed.is_set():
            return
        self.closed.set()
        for sub in self.subscriptions():
            sub.close()
        self._wake.set()

    async def stop(self) -> None:
        """Close, then wait for the poll loop to end (before the store closes). The loop
        ends by itself at its next step; it is cancelled only if a read hangs."""
        self.close()
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self) -> None:
        """Read the trail now rather than at the next poll: for a commit made in this
        process. Call it on the hub's event loop (``loop.call_soon_threadsafe`` from
        another thread)."""
        self._wake.set()

    @property
    def subscribers(self) -> int:
        return len(self._broad) + sum(len(s) for s in self._by_execution.values())

    def subscriptions(self) -> list[Subscription]:
        """The open subscriptions (for tests and diagnostics)."""
        return [*self._broad, *(s for subs in self._by_execution.values() for s in subs)]

    # subscriptions ----------------------------------------------------------------

    def subscribe(self, flt: EventFilter) -> Subscription:
        """A subscription that gets every matching line above the hub's position now."""
        sub = Subscription(flt, self.position, self.queue_size)
        if self.closed.is_set():
            sub.close()
            return sub
        if flt.execution_id is not None:
            self._by_execution.setdefault(flt.execution_id, set()).add(sub)
        else:
            self._broad.add(sub)
        self._wake.set()  # a first subscriber: start reading rows at once
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        self._broad.discard(sub)
        if sub.filter.execution_id is not None:
            subs = self._by_execution.get(sub.filter.execution_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_execution[sub.filter.execution_id]

    async def identity(self, event: TrailEvent) -> Identity:
        """The conversation and contact of the line's execution (the wire object's
        context carries them), read once per execution and kept in a small cache."""
        execution_id = event.record.execution_id
        known = self._identities.get(execution_id)
        if known is not None:
            self._identities.move_to_end(execution_id)
            return known
        try:
            found = Identity.of(await _uncancelled(self.store.get_execution(execution_id)))
        except (ExecutionNotFound, CorruptedRecord):
            # gone (retention) or unreadable: the line still goes out with what it holds
            found = Identity(event.institution_id or None)
        self.remember(execution_id, found)
        return found

    async def _status_of(self, execution_id: str) -> str | None:
        """The execution's status now; ``None`` when its row cannot be read."""
        try:
            return (await _uncancelled(self.store.get_execution(execution_id))).status.value
        except (ExecutionNotFound, CorruptedRecord):
            return None

    def remember(self, execution_id: str, identity: Identity) -> None:
        self._identities[execution_id] = identity
        self._identities.move_to_end(execution_id)
        while len(self._identities) > _IDENTITIES:
            self._identities.popitem(last=False)

    async def stream(
        self,
        flt: EventFilter,
        *,
        after: int | None,
        ping_seconds: float,
        status: str | None = None,
    ) -> AsyncGenerator[StreamItem, None]:
        """The lines a client should get, then live ones, as they come.

        ``after``: the last id the client saw (replay from the store above it);
        ``None`` starts after the newest committed line: only what happens from now. With
        ``flt.execution_id`` set, ``status`` is the execution's status when the stream
        opened, and the stream ends with :class:`Ended` once the execution is in a
        terminal state and :attr:`end_linger_seconds` passed without a new line.
        Yields :class:`Opened` first, once subscribed, and :class:`Ping` after
        ``ping_seconds`` without anything to send; returns when the hub closes.
        Store errors propagate (the client resumes later from its last id)."""
        sub = self.subscribe(flt)
        try:
            if sub.closed:
                return
            if after is None:
                # "from now" is the newest committed line, not the poll loop's position,
                # which may be up to a poll behind; lines up to it are skipped below
                sub.floor = max(sub.floor, await _uncancelled(self.store.last_trail_id()))
            yield Opened()
            follows_one = flt.execution_id is not None
            #: every id at or below this went out already or did not match
            cursor = sub.floor if after is None else after
            replay_to: int | None = None if after is None else sub.floor
            quiet_since = checked_at = time.monotonic()
            ended_at = time.monotonic() if follows_one and _terminal(status) else None
            while True:
                if replay_to is not None:
                    # read from the store: a resumed stream, or one whose queue overflowed
                    while True:
                        page = await _uncancelled(
                            self.store.trail_since(
                                cursor,
                                limit=self.batch,
                                execution_id=flt.execution_id,
                                institution_id=flt.institution_id,
                            )
                        )
                        for event in page:
                            cursor = event.id
                            if flt.matches(event):
                                status = event.status
                                yield event
                                quiet_since = time.monotonic()
                                if follows_one and _terminal(status):
                                    ended_at = quiet_since
                        if len(page) < self.batch or cursor >= replay_to:
                            break
                    replay_to = None
                now = time.monotonic()
                wait = ping_seconds - (now - quiet_since)
                if ended_at is not None:
                    wait = min(wait, self.end_linger_seconds - (now - ended_at))
                elif follows_one:
                    wait = min(wait, self.status_check_seconds - (now - checked_at))
                item = await sub.next(max(wait, 0.0))
                if item is Signal.CLOSED:
                    return
                if item is Signal.LAGGED:
                    replay_to = sub.resume(self.position)
                    continue
                if isinstance(item, TrailEvent):
                    if item.id <= cursor:
                        continue  # replayed from the store already
                    cursor = item.id
                    status = item.status
                    yield item
                    quiet_since = time.monotonic()
                    if follows_one and _terminal(status):
                        ended_at = quiet_since
                    continue
                now = time.monotonic()
                if (
                    follows_one
                    and ended_at is None
                    and now - checked_at >= self.status_check_seconds
                ):
                    checked_at = now
                    current = await self._status_of(flt.execution_id or "")
                    if _terminal(current):
                        status, ended_at = current, now
                if ended_at is not None and now - ended_at >= self.end_linger_seconds:
                    yield Ended(flt.execution_id or "", status or "")
                    return
                if now - quiet_since >= ping_seconds:
                    yield Ping()
                    quiet_since = now
        finally:
            self.unsubscribe(sub)

    # the poll loop -----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.poll_seconds
        #: adaptive: right after lines or a wake the next read comes soon (work is under
        #: way: a wake usually comes from the request that a worker's commit follows a
        #: few ms later), then the interval doubles per empty read up to ``poll_seconds``
        interval = self.poll_seconds
        while not self.closed.is_set():
            if self._wake.is_set():
                interval = self.min_poll_seconds
            self._wake.clear()
            try:
                if self.subscribers:
                    page = await _uncancelled(
                        self.store.trail_since(self.position, limit=self.batch)
                    )
                    self._dispatch(page)
                    if len(page) >= self.batch:
                        await asyncio.sleep(0)  # more to read: let the streams send first
                        continue
                    interval = (
                        self.min_poll_seconds if page else min(interval * 2, self.poll_seconds)
                    )
                else:
                    interval = self.poll_seconds
                    # nobody listens: keep up with the newest id without reading rows, so
                    # a first subscriber does not make the loop read a backlog
                    newest = await _uncancelled(self.store.last_trail_id())
                    if not self.subscribers:  # nobody subscribed while this was read
                        self.position = max(self.position, newest)
                if self._outage_since is not None:
                    down = time.monotonic() - self._outage_since
                    self._outage_since = None
                    log.warning("store.available", component="events", downSeconds=round(down, 3))
                backoff = self.poll_seconds
            except TrilhaError as exc:
                if self._outage_since is None:
                    # one line per outage, as the workers say it: an API process with no
                    # worker of its own still tells the operator its store is gone
                    self._outage_since = time.monotonic()
                    if isinstance(exc, StoreUnavailable):
                        log.critical(
                            "store.unavailable", component="events", error=str(exc), code=exc.code
                        )
                    else:
                        log.error("events.store_error", error=str(exc), code=exc.code)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                await self._sleep(backoff)
                continue
            except Exception:
                # never let the one reader die: every stream of the process hangs on it
                log.exception("events.poll_failed")
                backoff = min(backoff * 2, _BACKOFF_MAX)
                await self._sleep(backoff)
                continue
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _dispatch(self, page: list[TrailEvent]) -> None:
        """Hand each line to its subscriptions and advance, in one tick (no await), so
        a subscription sees either all of the page or none of it."""
        for event in page:
            for sub in self._by_execution.get(event.record.execution_id, ()):
                sub.offer(event)
            for sub in self._broad:
                sub.offer(event)
        if page:
            self.position = max(self.position, page[-1].id)


# bounds on open streams -----------------------------------------------------------------


class StreamsFull(Exception):
    """No room for another stream: the key's limit or the process's was reached."""

    def __init__(self, scope: Literal["key", "process"], limit: int) -> None:
        super().__init__(scope, limit)
        self.scope = scope
        self.limit = limit


@dataclass(eq=False, slots=True)
class StreamSlot:
    """One open stream's place, taken by :meth:`StreamGate.open`; give it back with
    :meth:`release` when the response ends (safe to call twice)."""

    principal: Principal
    gate: StreamGate
    #: set when the key was revoked or changed: the stream must end now
    revoked: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._forget(self)


def stream_budget(configured: int, descriptors: int | None = None) -> int:
    """The most streams this process may hold: ``configured``, but no more than
    :data:`STREAM_FD_SHARE` of its file descriptors (``descriptors``, default the soft
    ``RLIMIT_NOFILE``), so open streams alone can never exhaust them."""
    if descriptors is None:
        if sys.platform == "win32":
            return configured
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return configured
        descriptors = soft
    return max(1, min(configured, int(descriptors * STREAM_FD_SHARE)))


class StreamGate:
    """The open streams of a process, counted per API key, and the watch that ends a
    key's streams once the key stops being valid.

    ``recheck(principal)`` reads the key from the store (no cache) and says whether it
    still stands as the stream saw it; one read per key (not per stream) every
    ``recheck_seconds``. While the store cannot be read the streams stay open (the
    revocation, written there, cannot be seen either) and the next round checks again."""

    def __init__(
        self,
        *,
        per_key: int,
        total: int,
        recheck: Callable[[Principal], Awaitable[bool]],
        recheck_seconds: float = KEY_RECHECK_SECONDS,
    ) -> None:
        self.per_key = per_key
        self.total = total
        self.recheck = recheck
        self.recheck_seconds = recheck_seconds
        self._by_key: dict[str, set[StreamSlot]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def count(self) -> int:
        return self._count

    def held_by(self, key_id: str) -> int:
        return len(self._by_key.get(key_id, ()))

    def open(self, principal: Principal) -> StreamSlot:
        """A place for one more stream of ``principal``'s key, or :class:`StreamsFull`."""
        held = self._by_key.get(principal.key_id, set())
        if len(held) >= self.per_key:
            raise StreamsFull("key", self.per_key)
        if self._count >= self.total:
            raise StreamsFull("process", self.total)
        slot = StreamSlot(principal, self)
        self._by_key.setdefault(principal.key_id, held).add(slot)
        self._count += 1
        return slot

    def _forget(self, slot: StreamSlot) -> None:
        held = self._by_key.get(slot.principal.key_id)
        if held is None or slot not in held:
            return
        held.discard(slot)
        self._count -= 1
        if not held:
            del self._by_key[slot.principal.key_id]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="trilha-stream-keys")

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check_keys(self) -> int:
        """Read every key holding streams once; end the streams of those no longer
        valid. Returns how many streams were told to end."""
        ended = 0
        for principal in {slot.principal for slots in self._by_key.values() for slot in slots}:
            try:
                valid = await _uncancelled(self.recheck(principal))
            except TrilhaError as exc:
                log.warning("events.key_check_failed", keyId=principal.key_id, error=str(exc))
                continue
            if valid:
                continue
            doomed = [s for s in self._by_key.get(principal.key_id, ()) if s.principal == principal]
            for slot in doomed:
                slot.revoked.set()
            ended += len(doomed)
            log.info(
                "events.streams_revoked",
                keyId=principal.key_id,
                institutionId=principal.institution_id,
                streams=len(doomed),
            )
        return ended

    async def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.recheck_seconds)
            if self._by_key and not self._stop.is_set():
                try:
                    await self.check_keys()
                except Exception:
                    # never let the watch die: revoked keys would keep their streams
                    log.exception("events.key_watch_failed")


async def _uncancelled(read: Awaitable[T]) -> T:
    """Await a store read that a cancellation (a client leaving mid-read) abandons
    rather than cancels: the read completes in the store's thread and its result is
    dropped. Cancelling the store's pending future under its worker thread is what
    this avoids (the SQLite store's thread does not survive a result it cannot set)."""
    return await asyncio.shield(read)


def event_data(event: TrailEvent, identity: Identity) -> dict[str, Any]:
    """The ``data:`` of a line's event: the DESIGN §5 wire object (masked) plus the
    execution's ``executionId``, ``institutionId``, ``flowId`` and ``status``."""
    data = wire(event.record, identity)
    data["executionId"] = event.record.execution_id
    data["institutionId"] = event.institution_id or identity.institution_id
    data["flowId"] = event.flow_id or None
    data["status"] = event.status or None
    return data


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Also call ``callback`` (on the running loop) when SIGTERM or SIGINT arrives,
    after the handler already installed (the server's, which starts the shutdown).

    Why: uvicorn waits for open responses to finish before it runs the app's
    lifespan shutdown, and a live event stream never finishes by itself, so a
    SIGTERM would hang until the graceful timeout. Ending the streams on the signal
    itself lets the server stop at once. Returns a function that puts the previous
    handlers back. Does nothing off the main thread (signals cannot be handled there)
    or for a signal whose handler is not a Python callable (nobody captured it).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def chained(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            try:
                previous(signum, frame)
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(callback)

        signal.signal(sig, chained)
        installed[sig] = (chained, previous)

    def restore() -> None:
        for sig, (chained, previous) in installed.items():
            if signal.getsignal(sig) is chained:
                signal.signal(sig, previous)

    return restore
