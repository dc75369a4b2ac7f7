"""The in-process alert evaluator (DESIGN §5): signals from the store, rules from the
configuration, the state machine of :mod:`trilha.core.alerts`, and two sinks.

Every worker evaluates every rule (``[alerts] evaluation_interval_seconds``).
There is no leader to elect: the alert's state lives in the store, each change is
written with a compare-and-set on the state that was read, and only the process
whose write wins tells anyone. So a fleet of ten workers sends one notification
per change, and a worker that dies mid-evaluation loses nothing the next one
will not redo.

Store-wide rules (error rate, slow turn, queue, dead messages) use the instance
``""``; the memory rule is per host (its instance is the host name), since the host
that runs out of memory is the one to look at.

Sinks: a log line (CRITICAL for a critical alert firing, WARN for a warning
one, INFO when it resolves) and, when ``[alerts.webhook]`` is set, a JSON POST.
The POST is sent in the background, in order, retried with exponential backoff
on connection errors, 5xx and 429; a POST that finally fails is logged (its URL
without the query string, the error masked), never raised, so an unreachable
receiver cannot stall evaluation or the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the test extras

from trilha.channels.signing import WebhookSigner, json_body, signed_headers
from trilha.config import AlertWebhookConfig, Config, expand_env
from trilha.core.alerts import (
    DEFAULT_RULES,
    AlertRule,
    AlertState,
    AlertStatus,
    Signal,
    advance,
    evidence_since,
    format_signal,
)
from trilha.core.execution import iso
from trilha.observability.logging import get_logger
from trilha.observability.masking import mask_text

if TYPE_CHECKING:
    from trilha.engine.clock import Clock
    from trilha.store.base import Store

__all__ = [
    "AlertEvaluator",
    "WebhookSink",
    "alert_evidence",
    "alert_json",
    "format_age",
    "format_value",
    "run_alerts",
    "shown_states",
]

log = get_logger("trilha.alerts")

#: rules whose signal is the same whoever reads it; the others are per host
_PER_HOST = {Signal.MEMORY}
#: a per-host alert no evaluation touched for this many intervals (and at least this
#: long) belongs to a host that is gone: another host's evaluator resolves it
STALE_HOST_INTERVALS = 10
STALE_HOST_MIN_SECONDS = 300.0
_RULES_BY_NAME = {rule.name: rule for rule in DEFAULT_RULES}


def alert_json(state: AlertState, *, updated: bool = True) -> dict[str, Any]:
    """An alert on the wire (webhook body, ``trilha alerts --json``): camelCase keys,
    ISO-8601 times, and ``null`` for numbers JSON cannot carry."""
    body: dict[str, Any] = {
        "status": state.status.value,
        "rule": state.rule,
        "instance": state.instance,
        "severity": state.severity,
        "value": _finite(state.value),
        "threshold": _finite(state.threshold),
        "summary": state.summary,
        "activeAt": iso(state.active_at),
        "firedAt": iso(state.fired_at),
        "resolvedAt": iso(state.resolved_at),
    }
    if updated:
        body["updatedAt"] = iso(state.updated_at)
    return body


def alert_evidence(state: AlertState, rules: Iterable[AlertRule]) -> dict[str, str | None]:
    """Where to look for what is behind an alert, as API paths (each answers only the
    caller's institution's): the executions that show it (with failed steps since its
    window began; with a timed-out step, for slow turns; stuck, for a backlog; none for
    the host's memory) and the error groups since then; for dead messages, the
    messages themselves (``outbox``), which is where they are redriven from. ``rules``
    are the rules as configured (windows differ); a rule no longer configured is read
    as its default."""
    rule = {r.name: r for r in (*DEFAULT_RULES, *rules)}.get(state.rule)
    if rule is None:
        return {"executions": None, "errors": None, "outbox": None}
    if rule.signal is Signal.DEAD_MESSAGES:
        return {"executions": None, "errors": None, "outbox": "/v1/outbox?status=dead"}
    since = int(evidence_since(rule, state))
    executions = {
        Signal.ERROR_RATE: f"/v1/executions?since={since}",
        Signal.TURN_SECONDS: f"/v1/executions?errorKind=timeout&since={since}",
        Signal.QUEUE_DUE: "/v1/executions?stuck=true",
    }.get(rule.signal)
    return {"executions": executions, "errors": f"/v1/errors?since={since}", "outbox": None}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def format_value(rule_name: str, value: float | None) -> str:
    """A value as people read it for this rule (``-`` when there is none)."""
    if value is None or not math.isfinite(value):
        return "-"
    rule = _RULES_BY_NAME.get(rule_name)
    return format_signal(rule.signal if rule else None, value)


def format_age(seconds: float) -> str:
    """How long ago, in the largest whole unit: ``42s ago``, ``5m ago``, ``3h ago``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def shown_states(
    stored: Iterable[AlertState], rules: Iterable[AlertRule], now: float
) -> list[AlertState]:
    """What ``trilha alerts`` lists: every stored alert, plus an *inactive* line for
    each configured rule nothing has stored yet (the evaluator stores a rule only
    once it first breaches), so the list always shows what is being watched."""
    shown = list(stored)
    seen = {state.rule for state in shown}
    for rule in rules:
        if rule.name not in seen:
            shown.append(advance(rule, None, None, now)[0])  # never breached: inactive
    return sorted(shown, key=lambda s: (s.rule, s.instance))


class WebhookSink:
    """POSTs alert changes as JSON, one after another, in the background.

    Changes are delivered in the order they happened (a *resolved* never overtakes
    its *firing* while that one is being retried), each with up to
    ``max_attempts`` tries.
    """

    def __init__(
        self,
        config: AlertWebhookConfig,
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.url = config.url
        self.max_attempts = config.max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # ${NAME} expanded now: a missing secret fails the process at start, not at 3 a.m.
        self._headers = {
            k: expand_env(v, f"alerts.webhook.headers.{k}") for k, v in config.headers.items()
        }
        self._timeout = config.timeout_seconds
        self._signer = WebhookSigner.of(config.signing_secrets, "alerts.webhook.signing_secrets")
        self._client: httpx.AsyncClient | None = None
        self._last: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: notifications given up on (every attempt failed); for tests and diagnosis
        self.failed = 0
        self.delivered = 0

    @property
    def pending(self) -> int:
        """Notifications not yet delivered or given up."""
        return len(self._tasks)

    def send(self, state: AlertState) -> None:
        """Queue ``state`` for delivery after those queued before it; returns at once."""
        body = alert_json(state, updated=False)
        # one id per notification, kept across its retries (the receiver drops a repeat)
        message_id = f"msg_{uuid.uuid4().hex}"
        task = asyncio.create_task(self._after(self._last, message_id, body))
        self._last = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every queued notification is delivered or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, grace_seconds: float | None = None) -> None:
        """Let queued notifications finish (for up to ``grace_seconds``), then close."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _after(
        self, previous: asyncio.Task[None] | None, message_id: str, body: dict[str, Any]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        await self._deliver(message_id, body)

    async def _deliver(self, message_id: str, body: dict[str, Any]) -> None:
        where = _safe_url(self.url)
        content = json_body(body)
        error, attempt = "", 0
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            # signed at each attempt: its timestamp says when this one was sent
            headers = signed_headers(self._signer, message_id, content, time.time())
            try:
                response = await self._http().post(self.url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self.delivered += 1
                    return
                error = f"answered {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    break  # the receiver refuses this body; repeating it will not help
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt == self.max_attempts:
                break
            pause = self._backoff(attempt, retry_after)
            log.warning(
                "alert.webhook_retry",
                url=where,
                rule=body["rule"],
                status=body["status"],
                attempt=attempt,
                retryInSeconds=round(pause, 3),
                error=mask_text(error),
            )
            await asyncio.sleep(pause)
        self.failed += 1
        log.error(
            "alert.webhook_failed",
            url=where,
            rule=body["rule"],
            instance=body["instance"],
            status=body["status"],
            attempts=attempt,
            error=mask_text(error),
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with jitter; a receiver's Retry-After wins when it asks for longer
        (up to the cap), since it knows its own load best."""
        base = min(self.backoff_seconds * 2.0 ** (attempt - 1), self.max_backoff_seconds)
        pause = base * (0.5 + random.random() / 2)
        if retry_after is not None:
            pause = max(pause, min(retry_after, self.max_backoff_seconds))
        return pause

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers=self._headers, timeout=self._timeout, trust_env=False
            )
        return self._client


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the exponential backoff is good enough
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _safe_url(url: str) -> str:
    """The URL as logged: no credentials, no query string (tokens travel there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def host_memory() -> float:
    """The fraction of the host's memory in use (the memory rule's signal)."""
    return float(psutil.virtual_memory().percent) / 100


class AlertEvaluator:
    """Reads each rule's signal, moves the alert along and notifies on a won change.

    ``instance`` names this host in per-host alerts; ``backoff_seconds`` is the
    webhook's first retry pause (tests shorten it).
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        *,
        instance: str | None = None,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.instance = instance if instance is not None else socket.gethostname()
        hook = config.alerts.webhook
        self.webhook = WebhookSink(hook, backoff_seconds=backoff_seconds) if hook else None

    async def evaluate(self) -> list[AlertState]:
        """Evaluate every configured rule once; the states as they now stand.

        A rule that never breached is not stored (no row, no history line), but its
        state is returned so a caller can show the value just read. A rule disabled
        in the configuration while pending or firing is moved along with no value,
        so it resolves (and says so) instead of firing forever."""
        now = self.clock.now()
        stored = {(s.rule, s.instance): s for s in await self.store.alerts()}
        active = self.config.alerts.active_rules()
        keys = {rule.key for rule in active}
        result: list[AlertState] = []
        for rule in active:
            instance = self.instance if rule.signal in _PER_HOST else ""
            value = await self._read(rule, now)
            result.append(await self._step(rule, stored.get((rule.name, instance)), value, now))
        for rule in DEFAULT_RULES:
            if rule.key in keys:
                continue
            instance = self.instance if rule.signal in _PER_HOST else ""
            previous = stored.get((rule.name, instance))
            if previous and previous.status in (AlertStatus.PENDING, AlertStatus.FIRING):
                result.append(await self._step(rule, previous, None, now))
        # a host that stopped (or was renamed) no longer evaluates its own per-host alert:
        # any other evaluator resolves it once it has gone unevaluated for long enough,
        # so it does not fire (and show in the debugger's banner) for ever
        stale_after = max(
            STALE_HOST_INTERVALS * self.config.alerts.evaluation_interval_seconds,
            STALE_HOST_MIN_SECONDS,
        )
        rules = {r.name: r for r in DEFAULT_RULES} | {r.name: r for r in active}
        for (name, instance), previous in stored.items():
            known = rules.get(name)
            if (
                known is not None
                and known.signal in _PER_HOST
                and instance != self.instance
                and previous.status in (AlertStatus.PENDING, AlertStatus.FIRING)
                and now - previous.updated_at > stale_after
            ):
                await self._step(known, previous, None, now, instance)
        return result

    async def _read(self, rule: AlertRule, now: float) -> float | None:
        if rule.signal is Signal.ERROR_RATE:
            total, errors = await self.store.step_outcomes(now - rule.window_seconds)
            if total == 0 or total < rule.min_events:
                return None
            return errors / total
        if rule.signal is Signal.TURN_SECONDS:
            longest = await self.store.longest_turn(now - rule.window_seconds, now)
            return None if longest is None else longest.seconds
        if rule.signal is Signal.QUEUE_DUE:
            return float((await self.store.queue_stats(now)).due)
        if rule.signal is Signal.DEAD_MESSAGES:
            return float(await self.store.count_dead_outbox())
        return host_memory()

    async def _step(
        self,
        rule: AlertRule,
        previous: AlertState | None,
        value: float | None,
        now: float,
        instance: str | None = None,
    ) -> AlertState:
        if instance is None:
            instance = self.instance if rule.signal in _PER_HOST else ""
        state, notify = advance(rule, previous, value, now, instance)
        if previous is None and state.status is AlertStatus.INACTIVE:
            return state
        if not await self.store.save_alert(state, expected=previous):
            return state  # another process moved it first; that one notifies
        if notify is not None:
            self._notify(state)
        return state

    def _notify(self, state: AlertState) -> None:
        fields = {
            "rule": state.rule,
            "instance": state.instance,
            "severity": state.severity,
            "value": _finite(state.value),
            "threshold": _finite(state.threshold),
            "summary": state.summary,
        }
        if state.status is AlertStatus.RESOLVED:
            log.info("alert.resolved", **fields)
        elif state.severity == "critical":
            log.critical("alert.firing", **fields)
        else:
            log.warning("alert.firing", **fields)
        if self.webhook is not None:
            self.webhook.send(state)

    async def evaluate_logged(self) -> list[AlertState]:
        """:meth:`evaluate` for loops that must survive it: a failure (the store down,
        a bug) is one ERROR line and an empty result, never an exception."""
        try:
            return await self.evaluate()
        except Exception as exc:
            log.error(
                "alerts.evaluation_failed",
                error={"type": type(exc).__name__, "message": mask_text(str(exc))},
                code=getattr(exc, "code", None),
            )
            return []

    async def aclose(self, grace_seconds: float | None = 10.0) -> None:
        """Give queued webhook notifications up to ``grace_seconds``, then close: a
        stopping worker should not hang on an unreachable receiver."""
        if self.webhook is not None:
            await self.webhook.aclose(grace_seconds)


async def run_alerts(evaluator: AlertEvaluator, interval: float, stop: asyncio.Event) -> None:
    """Evaluate every ``interval`` seconds until ``stop``; for processes that evaluate
    without running a :class:`~trilha.engine.worker.Worker` (which evaluates itself)."""
    while not stop.is_set():
        await evaluator.evaluate_logged()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
