"""Circuit breakers, one per dependency, shared by every execution of a process.

While a dependency fails, calling it again only adds load and latency; the
breaker opens after ``failure_threshold`` consecutive transient failures,
fails calls fast for ``open_seconds``, then lets ``half_open_probes`` calls
through: a success closes it, a failure opens it again. The clock is
injected so the state machine is tested without sleeping.

Every move is a process log line (``breaker.opened`` WARN, ``breaker.closed``
INFO); an open breaker that has refused :data:`MANY_REFUSED` calls is a systemic
failure and says so once per opening, at CRITICAL (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from trilha.engine.clock import Clock

log = structlog.get_logger("trilha.breaker")

#: calls refused by one opening of a breaker that make it a systemic failure
MANY_REFUSED = 10


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    half_open_probes: int = 1


@dataclass(slots=True)
class CircuitBreaker:
    name: str
    settings: BreakerSettings
    clock: Clock
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float | None = None
    probes_in_flight: int = 0
    #: state changes, newest last: (at, state) — for metrics and logs
    changes: list[tuple[float, BreakerState]] = field(default_factory=list)
    #: calls refused since the breaker last opened
    refused: int = 0

    def allow(self) -> bool:
        """Whether a call may go out now (a half-open breaker admits a few probes)."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if self.clock.now() - self.opened_at < self.settings.open_seconds:
                return self._refuse()
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self.probes_in_flight >= self.settings.half_open_probes:
                return self._refuse()
            self.probes_in_flight += 1
        return True

    def _refuse(self) -> bool:
        self.refused += 1
        if self.refused == MANY_REFUSED:
            log.critical(
                "breaker.open_affecting_many",
                dependency=self.name,
                refusedCalls=self.refused,
                openForSeconds=round(self.clock.now() - (self.opened_at or 0.0), 3),
            )
        return False

    def retry_at(self) -> float | None:
        """When an open breaker lets a probe through (``None`` unless open)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.settings.open_seconds
        return None

    def record_success(self) -> None:
        self.failures = 0
        self.probes_in_flight = max(0, self.probes_in_flight - 1)
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def release(self) -> None:
        """A call that :meth:`allow` admitted ended without a verdict (cancelled, or
        refused before it went out): give its half-open probe slot back."""
        if self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight = max(0, self.probes_in_flight - 1)

    def record_failure(self) -> None:
        """A transient failure (timeout, connection, 5xx, 429); permanent ones do not count."""
        self.failures += 1
        self.probes_in_flight = max(0, self.probes_in_flight - 1)
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.settings.failure_threshold
        ):
            self.opened_at = self.clock.now()
            self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        was, self.state = self.state, state
        if state is not BreakerState.HALF_OPEN:
            self.probes_in_flight = 0
        if state is BreakerState.OPEN and was is BreakerState.CLOSED:
            self.refused = 0
            log.warning(
                "breaker.opened",
                dependency=self.name,
                failures=self.failures,
                openSeconds=self.settings.open_seconds,
            )
        elif state is BreakerState.CLOSED:
            log.info("breaker.closed", dependency=self.name, refusedCalls=self.refused)
        self.changes.append((self.clock.now(), state))
        del self.changes[:-100]


class BreakerRegistry:
    """The process's breakers by dependency name."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, settings: BreakerSettings | None = None) -> CircuitBreaker:
        """The breaker of dependency ``name``, created on first use; ``settings``, when
        given, replace the breaker's (its state is kept)."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, settings or BreakerSettings(), self.clock)
            self._breakers[name] = breaker
        elif settings is not None and settings != breaker.settings:
            breaker.settings = settings
        return breaker

    def all(self) -> dict[str, CircuitBreaker]:
        return dict(self._breakers)
