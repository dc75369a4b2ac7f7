"""``messages_per_second`` per number: one schedule per business number, kept by the
process's one channel object and so shared by every dispatcher the process runs.

Each number has the time its next send may start (a virtual schedule, GCRA: a token
bucket holding one token). A send whose slot comes within ``max_wait`` seconds takes the
slot and waits for it; a later one does not wait at all: it is refused at once with a
throttled :class:`~trilha.channels.whatsapp.graph.GraphError` carrying ``retry_after``
and ``deferred``, and the dispatcher puts the message back for then without counting an
attempt. So a number's burst waits in the outbox, not in the dispatcher's round, and
never holds back another number's messages, whose schedules are their own: one
institution's burst never takes another's capacity.

When Meta itself says a number is over its throughput (``130429``: its tier is below
``messages_per_second``), the number is held for a moment (:meth:`NumberThrottle.hold`)
and its next messages wait in the outbox the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from trilha.channels.whatsapp.graph import GraphError

#: the longest a send waits for its slot in the dispatcher's round
MAX_WAIT: Final = 0.5
#: how long a number sends nothing after Meta said it is over its throughput
HOLD_SECONDS: Final = 1.0


class NumberThrottle:
    """At most ``rate`` sends per second per key (a phone number id), spaced
    ``1 / rate`` seconds apart."""

    def __init__(
        self,
        rate: float,
        *,
        max_wait: float = MAX_WAIT,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.max_wait = max_wait
        self._monotonic = monotonic
        self._sleep = sleep
        #: key -> when its next send may start (monotonic seconds)
        self._next: dict[str, float] = {}

    def reserve(self, key: str, *, patient: bool = False) -> float:
        """Take ``key``'s next slot if it comes within ``max_wait`` (``patient``: whenever
        it comes); the seconds to wait for it. Raises a throttled, deferred
        :class:`GraphError` otherwise (the slot is left for others)."""
        now = self._monotonic()
        slot = max(now, self._next.get(key, now))
        wait = slot - now
        if wait > self.max_wait and not patient:
            raise GraphError(
                f"number {key} is at its messages_per_second; sending in {wait:.3f} s",
                kind="throttled",
                retry_after=round(wait, 3),
                deferred=True,
            )
        # one entry per configured number (the channel checks the number first)
        self._next[key] = slot + self.interval
        return wait

    def hold(self, key: str, seconds: float) -> None:
        """Give ``key`` no slot for ``seconds``: Meta said the number is over its
        throughput (``130429``), so its next sends wait in the outbox, no attempt spent,
        instead of meeting the same refusal."""
        now = self._monotonic()
        self._next[key] = max(self._next.get(key, now), now + seconds)

    async def acquire(self, key: str, *, patient: bool = False) -> None:
        """Wait for ``key``'s slot (at most ``max_wait`` unless ``patient``), or raise
        as :meth:`reserve`."""
        wait = self.reserve(key, patient=patient)
        if wait > 0:
            await self._sleep(wait)
