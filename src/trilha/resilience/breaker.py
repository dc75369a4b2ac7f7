"""Circuit breakers, one per dependency, shared by every execution of a process.

While a dependency fails, calling it again only adds load and latency; the breaker
fails calls fast instead. But a dependency that answers ``500`` for one class of
requests (the customer codes starting with 9) is up: its other requests work. So
what counts against it is decided per call (:class:`Call`) by the dependency's
``count`` list: by default a timeout, a connection error, ``429``, ``502``, ``503``
and ``504``, the answers of a service that is down or overloaded. Any other answer,
a ``500`` or a ``404`` included, is a failure of that request (the node retries it
and takes its fallback as always) and counts as the dependency answering (issue 22).

- **Closed**, the breaker keeps the verdicts of the last ``window`` calls and opens
  when at least ``min_calls`` are in and ``failure_rate`` of them failed
  (resilience4j's count-based sliding window): a rate, so a share of bad requests
  among good ones does not open it the way a run of them would. ``failure_threshold``
  consecutive failures, when set, open it as well.
- **Open**, it refuses calls for ``open_seconds`` (no request goes out).
- **Half-open**, it lets ``half_open_probes`` calls through and, once all have a
  verdict, closes when their failure rate is below ``failure_rate`` and opens again
  otherwise: several probes, so one bad input cannot keep it open nor one good input
  close it. A call admitted but ended without a verdict gives its slot back.

A verdict belongs to the state the call was admitted in (:attr:`CircuitBreaker.epoch`):
a slow call let through while closed that answers after the breaker opened is not
taken for a probe. The clock is injected so the state machine is tested without
sleeping.

Every move is a process log line (``breaker.opened`` WARN with the reason and the
call that tripped it, ``breaker.closed`` INFO with the reason); an open breaker that
has refused :data:`MANY_REFUSED` calls is a systemic failure and says so once per
opening, at CRITICAL (DESIGN §5). :meth:`CircuitBreaker.snapshot` tells what an
operator asks: its state, when and why it last opened, its recent calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

import structlog

from trilha.core.percentiles import percentile
from trilha.engine.clock import Clock

log = structlog.get_logger("trilha.breaker")

#: calls refused by one opening of a breaker that make it a systemic failure
MANY_REFUSED = 10

#: what counts against a dependency unless its ``breaker.count`` says otherwise: the
#: signs of a service down or overloaded, not of one request it cannot serve
DEFAULT_COUNT: Final[tuple[str, ...]] = ("timeout", "connect", "429", "502", "503", "504")
#: the words ``breaker.count`` takes besides a three-digit HTTP status (400 to 599)
COUNT_WORDS: Final[tuple[str, ...]] = ("timeout", "connect", "4xx", "5xx")

CallKind = Literal["timeout", "connect", "status"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def parse_count(tokens: Iterable[str]) -> tuple[str, ...]:
    """``breaker.count`` normalised (lower case, each once, in order); ValueError naming
    the first entry that is neither a word of :data:`COUNT_WORDS` nor a status 400-599."""
    out: list[str] = []
    for raw in tokens:
        token = raw.strip().lower()
        status = int(token) if len(token) == 3 and token.isdigit() else None
        if token not in COUNT_WORDS and (status is None or not 400 <= status <= 599):
            raise ValueError(
                f"unknown entry {raw!r}: expected {', '.join(COUNT_WORDS)}"
                " or an HTTP status from 400 to 599"
            )
        if token not in out:
            out.append(token)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Call:
    """How one call went, as its breaker hears it: ``kind`` ``status`` for an answer
    (any status, a 200 too), else ``timeout`` or ``connect`` (no answer)."""

    kind: CallKind
    status: int | None = None
    #: "METHOD URL"
    request: str | None = None
    message: str = ""
    #: seconds from the request to its answer (or to giving up on it)
    latency: float | None = None
    #: whose call it was: a breaker is shared by every institution allowed to call the
    #: dependency, and the call that trips it is shown only to its own
    institution_id: str | None = None

    @property
    def errored(self) -> bool:
        """Whether the call failed at all, counted against the dependency or not."""
        return self.kind != "status" or (self.status or 0) >= 400


#: the defaults (issue 17). A dependency failing 30 % of its calls at random is up (three
#: attempts mend nearly all of them), yet 10 of 20 such calls fail in about 5 % of
#: windows: "50 % of the last 20" opened it by chance every few hundred calls. "70 % of
#: the last 40, at least 20 in": 28 of 40 fail by chance in about 2 windows in 10
#: million, 14 of the first 20 in 1 in 4,000; a dependency that is down opens it after
#: 20 to 30 calls (all failing: 20 cold, about 25 after a window of 30 % failures).
DEFAULT_FAILURE_RATE: Final = 0.7
DEFAULT_WINDOW: Final = 40
DEFAULT_MIN_CALLS: Final = 20


#: how a failed call's error ``kind`` (:class:`~trilha.core.policies.ErrorKind` values)
#: reads to a breaker when no answer came
_NO_ANSWER: Final[dict[str, CallKind]] = {"timeout": "timeout", "connection": "connect"}


def call_of(
    error_kind: object,
    status: object,
    request: str | None = None,
    message: str = "",
    latency: float | None = None,
    institution_id: str | None = None,
) -> Call | None:
    """How a call reads to its breaker: an answer (any ``status``), else a timeout or a
    connection error by its error ``kind``; ``None`` for a call refused on this side (a
    blocked address, a bad configuration), which tells nothing about the dependency."""
    if isinstance(status, int) and not isinstance(status, bool):
        return Call("status", status, request, message, latency, institution_id)
    kind = _NO_ANSWER.get(str(error_kind))
    return None if kind is None else Call(kind, None, request, message, latency, institution_id)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    #: the share of counted failures, among the window's calls (or the probes'), that opens it
    failure_rate: float = DEFAULT_FAILURE_RATE
    #: how many of the latest calls the rate is measured over
    window: int = DEFAULT_WINDOW
    #: the fewest calls in the window before the rate is believed
    min_calls: int = DEFAULT_MIN_CALLS
    open_seconds: float = 30.0
    half_open_probes: int = 3
    #: consecutive counted failures that open it whatever the rate (``None``: off)
    failure_threshold: int | None = None
    #: what counts against the dependency (see :func:`parse_count`)
    count: tuple[str, ...] = DEFAULT_COUNT

    def counts(self, call: Call) -> bool:
        """Whether ``call`` is a failure of the dependency (not only of the request)."""
        if call.kind != "status":
            return call.kind in self.count
        status = call.status or 0
        if status < 400:
            return False
        return str(status) in self.count or f"{status // 100}xx" in self.count


@dataclass(frozen=True, slots=True)
class Trip:
    """The call that last opened the breaker, and why it opened."""

    at: float
    #: "6 of 10 recent calls failed (60% >= 50%)" / "half-open probes: 1 of 3 succeeded"
    reason: str
    kind: str
    status: int | None
    request: str | None
    message: str
    #: whose call it was (see :attr:`Call.institution_id`)
    institution_id: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker as an operator reads it (``GET /v1/dependencies``)."""

    name: str
    state: BreakerState
    #: when it last opened / closed (``closed_at`` is ``None`` if it never opened)
    opened_at: float | None
    closed_at: float | None
    #: when an open breaker lets probes through
    retry_at: float | None
    #: why it last opened
    trip: Trip | None
    #: verdicts in the sliding window, and the failures that count among them
    calls: int
    failures: int
    failure_rate: float | None
    #: the window's calls that failed at all, counted or not (a 500 the breaker does
    #: not count is still a call that did not succeed)
    errors: int
    #: seconds, over the window's calls
    latency_p50: float | None
    latency_p95: float | None
    #: calls refused since it last opened
    refused: int


@dataclass(frozen=True, slots=True)
class _Verdict:
    failed: bool
    errored: bool
    latency: float | None


@dataclass(slots=True)
class CircuitBreaker:
    name: str
    settings: BreakerSettings
    clock: Clock
    state: BreakerState = BreakerState.CLOSED
    opened_at: float | None = None
    closed_at: float | None = None
    trip: Trip | None = None
    #: bumped at every change of state: the verdict of a call admitted in an earlier
    #: epoch does not move the breaker
    epoch: int = 0
    #: state changes, newest last: (at, state) — for metrics and logs
    changes: list[tuple[float, BreakerState]] = field(default_factory=list)
    #: calls refused since the breaker last opened
    refused: int = 0
    _window: deque[_Verdict] = field(default_factory=deque, init=False, repr=False)
    _failed: int = field(default=0, init=False, repr=False)
    _consecutive: int = field(default=0, init=False, repr=False)
    _probes_in_flight: int = field(default=0, init=False, repr=False)
    _probes: list[bool] = field(default_factory=list, init=False, repr=False)
    _probe_failure: Call | None = field(default=None, init=False, repr=False)

    def allow(self) -> bool:
        """Whether a call may go out now (a half-open breaker admits a few probes)."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if self.clock.now() - self.opened_at < self.settings.open_seconds:
                return self._refuse()
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_in_flight + len(self._probes) >= self.settings.half_open_probes:
                return self._refuse()
            self._probes_in_flight += 1
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

    def record(self, call: Call, epoch: int | None = None) -> None:
        """The verdict of a call :meth:`allow` admitted in ``epoch`` (``None``: now)."""
        if epoch is not None and epoch != self.epoch:
            return  # admitted before the last change of state: tells nothing about this one
        failed = self.settings.counts(call)
        self._remember(_Verdict(failed, call.errored, call.latency))
        if self.state is BreakerState.HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probes.append(failed)
            if failed:
                self._probe_failure = call
            self._judge_probes()
        elif self.state is BreakerState.CLOSED:
            self._consecutive = self._consecutive + 1 if failed else 0
            if failed:
                self._judge_window(call)

    def release(self, epoch: int | None = None) -> None:
        """A call that :meth:`allow` admitted in ``epoch`` ended without a verdict
        (cancelled, or refused before it went out): give its half-open probe slot back."""
        if self.state is BreakerState.HALF_OPEN and epoch in (None, self.epoch):
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def healthy(self, request: str, status: int) -> None:
        """The dependency's health check answered ``status`` (2xx): it is back, close now."""
        if self.state is not BreakerState.CLOSED:
            self._close(f"health check {request} answered {status}")

    def configure(self, settings: BreakerSettings) -> None:
        """New settings; the state and the latest verdicts (as many as fit) are kept."""
        if settings == self.settings:
            return
        self.settings = settings
        kept = list(self._window)[-settings.window :]
        self._window = deque(kept)
        self._failed = sum(v.failed for v in kept)

    def snapshot(self) -> BreakerSnapshot:
        calls = len(self._window)
        latencies = [v.latency for v in self._window if v.latency is not None]
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            retry_at=self.retry_at(),
            trip=self.trip,
            calls=calls,
            failures=self._failed,
            failure_rate=self._failed / calls if calls else None,
            errors=sum(v.errored for v in self._window),
            latency_p50=percentile(latencies, 0.5) if latencies else None,
            latency_p95=percentile(latencies, 0.95) if latencies else None,
            refused=self.refused,
        )

    # ------------------------------------------------------------------------- inside

    def _remember(self, verdict: _Verdict) -> None:
        if len(self._window) >= self.settings.window:
            self._failed -= self._window.popleft().failed
        self._window.append(verdict)
        self._failed += verdict.failed

    def _judge_window(self, call: Call) -> None:
        """Closed, after a counted failure: open on the rate, or on the run of failures."""
        s = self.settings
        calls = len(self._window)
        rate = self._failed / calls
        if calls >= s.min_calls and rate >= s.failure_rate:
            reason = (
                f"{self._failed} of {calls} recent calls failed"
                f" ({rate:.0%} >= {s.failure_rate:.0%})"
            )
        elif s.failure_threshold is not None and self._consecutive >= s.failure_threshold:
            reason = f"{self._consecutive} consecutive calls failed"
        else:
            return
        self._open(reason, call)

    def _judge_probes(self) -> None:
        """Half-open, once every probe has its verdict: close or open again."""
        probes = self.settings.half_open_probes
        if len(self._probes) < probes:
            return
        failed = sum(self._probes)
        reason = f"half-open probes: {probes - failed} of {probes} succeeded"
        if failed / probes < self.settings.failure_rate:
            self._close(reason)
        else:
            assert self._probe_failure is not None
            self._open(reason, self._probe_failure)

    def _open(self, reason: str, call: Call) -> None:
        now = self.clock.now()
        self.opened_at = now
        self.trip = Trip(
            now, reason, call.kind, call.status, call.request, call.message, call.institution_id
        )
        if self.state is BreakerState.CLOSED:
            self.refused = 0
        log.warning(
            "breaker.opened",
            dependency=self.name,
            reason=reason,
            request=call.request,
            kind=call.kind,
            status=call.status,
            error=call.message,
            openSeconds=self.settings.open_seconds,
        )
        self._move(BreakerState.OPEN)

    def _close(self, reason: str) -> None:
        now = self.clock.now()
        log.info(
            "breaker.closed",
            dependency=self.name,
            reason=reason,
            refusedCalls=self.refused,
            openForSeconds=None if self.opened_at is None else round(now - self.opened_at, 3),
        )
        self.closed_at = now
        self._window.clear()
        self._failed = 0
        self._consecutive = 0
        self._move(BreakerState.CLOSED)

    def _move(self, state: BreakerState) -> None:
        self.state = state
        self.epoch += 1
        self._probes_in_flight = 0
        self._probes = []
        self._probe_failure = None
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
        elif settings is not None:
            breaker.configure(settings)
        return breaker

    def all(self) -> dict[str, CircuitBreaker]:
        return dict(self._breakers)
