"""Configuration: ``trilha.toml`` (or ``--config FILE``), validated by pydantic.

Keys may be written snake_case (TOML's habit) or camelCase (the wire's).
Header values may name environment variables as ``${NAME}`` so secrets stay
out of the file; a missing variable is a :class:`ConfigError` naming it.

::

    [engine]
    lease_seconds = 30

    [http]
    allow_private = ["127.0.0.1"]       # hosts the http node may reach though private

    [dependencies.crm]
    base_url = "http://127.0.0.1:9000"  # a declared dependency may be private
    headers = { Authorization = "Bearer ${CRM_TOKEN}" }
    timeout_seconds = 5
    health_url = "/health"              # optional: GET, 2xx is healthy
    retry = { max_attempts = 3, initial_interval_seconds = 1 }
    retry_rounds = 3                    # rounds of those attempts while it looks flaky
    breaker = { failure_rate = 0.7, window = 40, count = ["timeout", "connect", "5xx"] }

    [channel]
    kind = "webhook"                    # terminal | webhook | memory | whatsapp
    url = "http://127.0.0.1:8080/messages"

    [calendars.clinic]                  # business hours flows read by name
    time_zone = "America/Sao_Paulo"
    institutions = ["acme"]             # optional: every institution when absent
    hours = { mon = [["08:00", "12:00"], ["13:00", "18:00"]], sat = [["08:00", "12:00"]] }
    holidays = ["2025-12-25", { date = "2025-12-24", hours = [["08:00", "12:00"]] }]
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from trilha.core.alerts import DEFAULT_RULES, AlertRule
from trilha.core.calendars import CalendarDefinition, valid_name
from trilha.core.flow import FLOW_ID_PATTERN, RetryPolicy, format_loc
from trilha.core.triggers import Trigger, trigger_problems
from trilha.core.wire import WireModel
from trilha.errors import ConfigError
from trilha.resilience.breaker import (
    DEFAULT_COUNT,
    DEFAULT_FAILURE_RATE,
    DEFAULT_MIN_CALLS,
    DEFAULT_WINDOW,
    BreakerSettings,
    parse_count,
)

#: an institution id (as API keys carry it), or ``*`` for every institution
INSTITUTION_PATTERN = r"^(?:\*|[A-Za-z0-9_.\-]+)$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class EngineConfig(WireModel):
    lease_seconds: float = Field(default=30.0, gt=0.1, le=3_600, allow_inf_nan=False)
    batch_size: int = Field(default=64, ge=1, le=1_000)
    poll_interval_seconds: float = Field(default=0.2, gt=0, le=60)
    #: how often a running worker tells the store it is alive; a worker silent for
    #: three of these is taken for dead and its executions are claimed by others
    heartbeat_seconds: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)
    max_steps_per_turn: int = Field(default=1_000, ge=1, le=100_000)
    #: steps one execution may take in its whole life, and steps in a row without any
    #: reply from the contact (a loop through a delay): past either it ends ``failed``
    max_steps_per_execution: int = Field(default=10_000, ge=1, le=100_000_000)
    max_steps_without_input: int = Field(default=1_000, ge=1, le=100_000_000)
    #: a reply longer than this (characters) takes the question's invalid-answer path
    #: before any check runs; 4,096 is WhatsApp's own limit for a text message
    max_input_chars: int = Field(default=4_096, ge=1, le=1_048_576)
    #: the largest value a node may assign to one variable, measured as its JSON
    max_value_bytes: int = Field(default=65_536, ge=64, le=64 * 2**20)
    #: the largest an execution's variables may grow, measured as their JSON
    max_state_bytes: int = Field(default=262_144, ge=256, le=256 * 2**20)
    #: how many sub-flows may run nested inside one another (``subflow`` nodes); a call
    #: past it fails the calling node with kind ``limit``
    max_call_depth: int = Field(default=8, ge=1, le=100)
    #: signals an execution may hold that no ``wait_event`` node has taken yet; one more
    #: is refused (a sender cannot pile up signals nothing waits for)
    max_pending_signals: int = Field(default=100, ge=1, le=100_000)


class HttpConfig(WireModel):
    #: hosts (names or IP addresses) the http node may reach even though they are private
    allow_private: list[str] = Field(default_factory=list)
    default_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    max_response_bytes: int = Field(default=1_048_576, ge=1)


class BreakerConfig(WireModel):
    """A dependency's circuit breaker (see :mod:`trilha.resilience.breaker`)."""

    #: the share of failures, among the last ``window`` calls, that opens it
    failure_rate: float = Field(default=DEFAULT_FAILURE_RATE, gt=0, le=1, allow_inf_nan=False)
    #: how many of the latest calls the failure rate is measured over
    window: int = Field(default=DEFAULT_WINDOW, ge=1, le=1_000)
    #: the fewest calls in the window before the rate may open it
    min_calls: int = Field(default=DEFAULT_MIN_CALLS, ge=1, le=1_000)
    #: how long an open breaker fails calls fast before it lets probes through
    open_seconds: float = Field(default=30.0, gt=0, le=86_400, allow_inf_nan=False)
    #: calls let through while half-open; once all are answered it closes when their
    #: failure rate is below ``failure_rate``, else opens again
    half_open_probes: int = Field(default=3, ge=1, le=1_000)
    #: consecutive failures that open it whatever the rate; off unless set
    failure_threshold: int | None = Field(default=None, ge=1, le=10_000)
    #: what counts as the dependency failing: timeout, connect, 4xx, 5xx or a status;
    #: any other failure is the request's own (retried, then its fallback)
    count: list[str] = Field(default_factory=lambda: list(DEFAULT_COUNT), max_length=200)

    @field_validator("count")
    @classmethod
    def _known_tokens(cls, value: list[str]) -> list[str]:
        return list(parse_count(value))

    @model_validator(mode="after")
    def _min_calls_fit(self) -> Self:
        if self.min_calls > self.window:
            raise ValueError(
                f"min_calls ({self.min_calls}) is larger than window ({self.window}):"
                " the breaker could never open on its failure rate"
            )
        return self

    def settings(self) -> BreakerSettings:
        return BreakerSettings(
            failure_rate=self.failure_rate,
            window=self.window,
            min_calls=self.min_calls,
            open_seconds=self.open_seconds,
            half_open_probes=self.half_open_probes,
            failure_threshold=self.failure_threshold,
            count=tuple(self.count),
        )


#: an HTTP header's name (RFC 9110 token)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class DependencyConfig(WireModel):
    """A service flows may call by name (``http`` and ``ai`` nodes): the CRM, the NLP..."""

    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    #: Standard Webhooks secrets signing what trilha POSTs to it as a webhook (the
    #: ``handoff`` desk's notices); see :class:`ChannelConfig`
    signing_secrets: list[str] = Field(default_factory=list, max_length=2)
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    #: GET it to tell whether the dependency is back (2xx); a path relative to
    #: ``base_url`` or an absolute URL on the same host
    health_url: str | None = Field(default=None, min_length=1, max_length=2_000)
    #: the retry policy of nodes calling this dependency that do not set their own
    retry: RetryPolicy | None = None
    #: rounds of a node's attempts (``max_attempts`` each) while its calls fail in ways
    #: that count against this dependency (``breaker.count``): a round spent so leaves
    #: the execution ``recovering`` for a pause, then the next round begins; ``1``: off
    retry_rounds: int = Field(default=3, ge=1, le=10)
    #: the pause before round 2 (0.5 to 1 times this, jittered), doubling per round
    retry_round_seconds: float = Field(default=1.0, gt=0, le=3_600, allow_inf_nan=False)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    #: the shortest pause between two probes while an execution waits for the dependency
    wait_probe_interval_seconds: float = Field(default=5.0, gt=0, le=3_600, allow_inf_nan=False)
    #: who may call it: institution ids, or ``["*"]`` for every institution; without
    #: it only the shared flows (``--flows DIR``) may (see :mod:`trilha.core.tenancy`)
    institutions: list[Annotated[str, Field(pattern=INSTITUTION_PATTERN)]] | None = None
    #: the header carrying an ``http`` node's idempotency key (the same on every attempt
    #: of a step); ``""`` sends none, for a service that refuses unknown headers
    idempotency_header: str = Field(default="Idempotency-Key", max_length=100)
    #: the service applies a request at most once per idempotency key, so a ``POST`` or
    #: ``PATCH`` whose answer was lost may be sent again (see :mod:`trilha.core.policies`)
    idempotent: bool = False

    @field_validator("idempotency_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if value and not _HEADER_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a header name (letters, digits and -, as in"
                ' "X-Request-Id"); "" sends no key'
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, not {value!r}")
        return value

    @model_validator(mode="after")
    def _health_on_same_host(self) -> Self:
        health = urlsplit(self.health_url or "")
        if health.scheme and health.netloc != urlsplit(self.base_url).netloc:
            raise ValueError(f"health_url {self.health_url!r} is not on base_url's host")
        return self

    def resolved_headers(self, name: str = "?") -> dict[str, str]:
        """The headers with ``${NAME}`` expanded (a missing variable is a ConfigError)."""
        return {
            k: expand_env(v, f"dependencies.{name}.headers.{k}") for k, v in self.headers.items()
        }


class CalendarConfig(CalendarDefinition):
    """A calendar of ``trilha.toml`` (``[calendars.NAME]``, see
    :mod:`trilha.core.calendars`), for the institutions it names. An institution's own
    calendar of the same name (``PUT /v1/calendars/NAME``) takes its place for it."""

    #: whose calendar it is: institution ids, or ``["*"]``; every institution when absent
    institutions: list[Annotated[str, Field(pattern=INSTITUTION_PATTERN)]] | None = Field(
        default=None, max_length=10_000
    )

    def serves(self, institution_id: str) -> bool:
        return self.institutions is None or any(
            who in ("*", institution_id) for who in self.institutions
        )


Renderable = Literal["buttons", "list", "media", "location"]


#: Meta's Graph API, where the WhatsApp Cloud API lives (a version Meta supports)
GRAPH_API_BASE_URL = "https://graph.facebook.com/v21.0"


class WhatsAppNumber(WireModel):
    """One WhatsApp business number and the institution whose flows answer on it."""

    #: the number's id in Meta's WhatsApp Manager (not the phone number itself)
    phone_number_id: str = Field(pattern=r"^[0-9]{1,32}$")
    institution: str = Field(min_length=1, max_length=200, pattern=FLOW_ID_PATTERN)
    #: this number's own token (``${NAME}``), for an institution with its own business
    #: account: no other institution's number is ever sent with it
    access_token: str | None = Field(default=None, min_length=1, max_length=4_096)


class WhatsAppConfig(WireModel):
    """``[channel.whatsapp]``: Meta's WhatsApp Cloud API (:mod:`trilha.channels.whatsapp`)."""

    #: the system user's token (``${NAME}``) that sends messages and reads media
    access_token: str = Field(min_length=1, max_length=4_096)
    #: the Meta app's secret (``${NAME}``): ``X-Hub-Signature-256`` is checked with it
    app_secret: str = Field(min_length=1, max_length=4_096)
    #: what Meta's subscription check must send as ``hub.verify_token``
    verify_token: str = Field(min_length=1, max_length=4_096)
    #: the Graph API's address and version; tests point it at a stand-in
    api_base_url: str = Field(default=GRAPH_API_BASE_URL, min_length=1, max_length=2_000)
    #: sends per second per number, shared by every worker of the process (Meta's default
    #: throughput is 80)
    messages_per_second: float = Field(default=80.0, gt=0, le=1_000, allow_inf_nan=False)
    #: mark the contact's messages read (blue ticks) when the bot answers them
    mark_read: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    numbers: list[WhatsAppNumber] = Field(min_length=1, max_length=10_000)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, not {value[:80]!r}")
        return value.rstrip("/")

    @field_validator("numbers")
    @classmethod
    def _numbers_once(cls, value: list[WhatsAppNumber]) -> list[WhatsAppNumber]:
        seen: set[str] = set()
        for i, number in enumerate(value):
            if number.phone_number_id in seen:
                raise ValueError(f"numbers[{i}]: phone_number_id {number.phone_number_id} twice")
            seen.add(number.phone_number_id)
        return value

    def number(self, phone_number_id: str) -> WhatsAppNumber | None:
        """The configured number with this id (``None``: not one of ours)."""
        return next((n for n in self.numbers if n.phone_number_id == phone_number_id), None)


class ChannelConfig(WireModel):
    kind: Literal["terminal", "webhook", "memory", "whatsapp"] = "terminal"
    #: ``kind = "whatsapp"``: the Cloud API's settings and numbers
    whatsapp: WhatsAppConfig | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: Standard Webhooks secrets (``whsec_<base64>``, or ``${NAME}``) that sign what trilha
    #: POSTs here: the current one, and during a rotation the one it replaces
    signing_secrets: list[str] = Field(default_factory=list, max_length=2)
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    #: attempts per message before it is given up (``dead``: kept, listed, redriven)
    max_attempts: int = Field(default=10, ge=1, le=1_000)
    #: the pause after a message's first failed attempt (with jitter: half to all of it);
    #: it doubles with each attempt up to ``max_backoff_seconds``
    backoff_seconds: float = Field(default=0.5, gt=0, le=3_600, allow_inf_nan=False)
    max_backoff_seconds: float = Field(default=300.0, gt=0, le=86_400, allow_inf_nan=False)
    #: what the platform behind the webhook shows besides text: any of ``buttons``,
    #: ``list``, ``media``, ``location`` (all by default); the rest is degraded (buttons
    #: to a list, a list to numbered text, media to caption and link, a place to its
    #: address and a map link) and the trail says so
    renders: list[Renderable] = Field(default_factory=lambda: list(get_args(Renderable)))

    @model_validator(mode="after")
    def _whatsapp_settings(self) -> Self:
        if self.kind == "whatsapp" and self.whatsapp is None:
            raise ValueError("whatsapp: [channel.whatsapp] is required when kind is 'whatsapp'")
        return self


class MetricsConfig(WireModel):
    """``/metrics``: what it may show, and where.

    The metrics span every institution, so ``trilha serve`` answers ``/metrics`` to an
    admin key only; or, with ``listen``, on that separate address without a key (for a
    scraper on a private network) and not on the API's address at all."""

    #: institutions beyond the first N seen share the ``other`` label (bounded cardinality)
    top_institutions: int = Field(default=50, ge=1, le=10_000)
    #: flows beyond the first N seen share the ``other`` label, as institutions do
    top_flows: int = Field(default=50, ge=1, le=10_000)
    #: serve ``/metrics`` on this separate ``HOST:PORT`` (``[::1]:9464`` for IPv6)
    #: without a key, instead of on the API's address behind an admin key; also where
    #: ``trilha metrics-server`` listens when not told ``--host``/``--port``
    listen: str | None = Field(default=None, min_length=1, max_length=300)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    def listen_address(self) -> tuple[str, int] | None:
        """``listen`` as ``(host, port)``, or ``None`` when not set."""
        return None if self.listen is None else parse_listen(self.listen)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT``) as ``(host, port)``; ValueError saying what is wrong."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, not {value!r}")
    if ":" in host and not value.strip().startswith("["):
        raise ValueError(f"an IPv6 address is written in brackets, [::1]:9464, not {value!r}")
    return host, int(port)


LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "OFF"]


def _level(value: object) -> object:
    """Levels may be written in any case, and WARNING for WARN."""
    if isinstance(value, str):
        upper = value.strip().upper()
        return "WARN" if upper == "WARNING" else upper
    return value


class LoggingConfig(WireModel):
    """Process logs (stdout, a rotating file) and the stored trail of each execution."""

    #: the least severe line printed to stdout and the file; OFF prints nothing
    level: LogLevel = "INFO"
    #: per-institution levels, overriding ``level`` for that institution's executions
    institutions: dict[str, LogLevel] = Field(default_factory=dict)
    #: ``auto``: a readable console form when stdout is a terminal, else JSON lines
    format: Literal["auto", "json", "console"] = "auto"
    #: also write JSON lines to this file, rotated at ``file_max_bytes``
    file: str | None = Field(default=None, min_length=1)
    file_max_bytes: int = Field(default=50 * 2**20, ge=1_024)
    file_backups: int = Field(default=5, ge=0, le=1_000)
    #: the least severe line kept in the store's trail; DEBUG (node entry and exit,
    #: the default) is what makes an execution's trail complete
    store_level: LogLevel = "DEBUG"
    #: the trail of an execution that ended longer ago than this is deleted by the
    #: sweeper; 0 keeps trails forever
    retention_days: float = Field(default=30.0, ge=0, le=36_500, allow_inf_nan=False)

    @field_validator("level", "store_level", mode="before")
    @classmethod
    def _one_level(cls, value: object) -> object:
        return _level(value)

    @field_validator("institutions", mode="before")
    @classmethod
    def _levels(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: _level(v) for k, v in value.items()}
        return value


class AlertRuleConfig(WireModel):
    """Changes to one of the default alert rules (:data:`trilha.core.alerts.DEFAULT_RULES`)."""

    enabled: bool = True
    threshold: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    window_seconds: float | None = Field(default=None, gt=0, le=86_400, allow_inf_nan=False)
    for_seconds: float | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False)
    severity: Literal["critical", "warning"] | None = None
    min_events: int | None = Field(default=None, ge=0)


class AlertWebhookConfig(WireModel):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    #: Standard Webhooks secrets (``whsec_<base64>``, or ``${NAME}``) that sign what trilha
    #: POSTs here: the current one, and during a rotation the one it replaces
    signing_secrets: list[str] = Field(default_factory=list, max_length=2)
    timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, not {value!r}")
        return value


class AlertsConfig(WireModel):
    enabled: bool = True
    evaluation_interval_seconds: float = Field(default=15.0, gt=0, le=3_600)
    #: keys: error_rate, slow_turn, queue_backlog, memory, dead_messages
    rules: dict[str, AlertRuleConfig] = Field(default_factory=dict)
    webhook: AlertWebhookConfig | None = None

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, AlertRuleConfig]) -> dict[str, AlertRuleConfig]:
        known = {rule.key for rule in DEFAULT_RULES}
        for key in value:
            if key not in known:
                raise ValueError(
                    f"unknown rule {key!r}: expected one of {', '.join(sorted(known))}"
                )
        return value

    def active_rules(self) -> list[AlertRule]:
        """The default rules with this file's changes, the disabled ones left out."""
        rules = []
        for rule in DEFAULT_RULES:
            change = self.rules.get(rule.key, AlertRuleConfig())
            if not change.enabled:
                continue
            rules.append(
                replace(
                    rule,
                    threshold=rule.threshold if change.threshold is None else change.threshold,
                    window_seconds=change.window_seconds or rule.window_seconds,
                    for_seconds=(
                        rule.for_seconds if change.for_seconds is None else change.for_seconds
                    ),
                    severity=change.severity or rule.severity,
                    min_events=rule.min_events if change.min_events is None else change.min_events,
                )
            )
        return rules


class ApiConfig(WireModel):
    """``trilha serve``: limits that keep one tenant or one burst from hurting the rest."""

    #: requests per second each API key may make, on average...
    rate_limit_per_second: float = Field(default=50.0, gt=0, le=100_000, allow_inf_nan=False)
    #: ...and in a burst
    rate_limit_burst: int = Field(default=100, ge=1, le=1_000_000)
    #: request bodies above this answer 413
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=100 * 2**20)
    #: with more executions due and unclaimed than this, starting new ones answers 503
    #: (replies to existing conversations are still accepted)
    max_queue_due: int = Field(default=10_000, ge=1)
    #: how long an Idempotency-Key's response is kept for replay
    idempotency_hours: float = Field(default=24.0, gt=0, le=24 * 365, allow_inf_nan=False)
    #: how long a live event stream waits for news before it sends a keep-alive
    sse_ping_seconds: float = Field(default=15.0, gt=0, le=600, allow_inf_nan=False)
    #: live event streams one API key may hold open at once, and the whole process
    #: (each is a connection and a file descriptor); beyond them a new one answers 429.
    #: A debugger tab holds one or two; the process's bound is also kept below half
    #: its file descriptors (``ulimit -n``), whatever it is set to
    max_streams_per_key: int = Field(default=8, ge=1, le=10_000)
    max_streams: int = Field(default=256, ge=1, le=100_000)
    #: the longest a flow's drawing (GET /v1/executions/{id}/graph) may take to compute,
    #: waiting for a free slot included; past it the request answers 503 (kind limit).
    #: The largest flows validation accepts take about a second
    graph_seconds: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    #: drawings computed at once in the process, each in a thread; requests for other
    #: flows wait for a slot. Threads share the interpreter's lock, so more than one
    #: adds no speed, only contention with the event loop
    graph_concurrency: int = Field(default=1, ge=1, le=64)
    #: bytes of computed drawings kept, per flow version, least recently used out first
    #: (the largest flow's is about 7 MB); 0 keeps none
    graph_cache_bytes: int = Field(default=64 * 2**20, ge=0, le=2**34)
    #: a connection must send a request's complete headers within this many seconds of
    #: opening (between requests, of its first byte; an idle one is keep_alive_seconds');
    #: past it the connection is closed (with a 408 when part of a request had arrived).
    #: Bounds slow-header ("slowloris") clients
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    #: a request's body must arrive complete within this many seconds of its headers;
    #: past it the request answers 408 and the connection is closed
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3_600, allow_inf_nan=False)
    #: an idle keep-alive connection is closed after this many seconds
    keep_alive_seconds: int = Field(default=5, ge=1, le=600)
    #: open connections the process serves at once (live event streams included); a
    #: connection beyond them is answered 503 with Retry-After and closed
    max_connections: int = Field(default=1_000, ge=1, le=100_000)
    #: calendars one institution may keep through ``PUT /v1/calendars/{name}`` (those of
    #: trilha.toml are not counted)
    max_calendars: int = Field(default=100, ge=1, le=10_000)
    #: where the handoff desk reaches this API (``https://trilha.example.com``): the
    #: desk's notices carry the handback and agent-messages URLs on it; without it they
    #: carry the paths alone (``/v1/conversations/.../handback``)
    public_url: str | None = Field(default=None, max_length=2_000)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError(f"must be an http(s) URL with a host and no query, not {value!r}")
        return value.rstrip("/")


class TriggerConfig(Trigger):
    """``[[triggers]]``: one institution's trigger (see :mod:`trilha.core.triggers`).
    They are that institution's triggers until it sets its own with ``PUT
    /v1/triggers``, which replace them (``DELETE /v1/triggers`` returns to these)."""

    institution: str = Field(min_length=1, max_length=200, pattern=FLOW_ID_PATTERN)


#: every ``[[triggers]]`` entry, all institutions together
MAX_CONFIG_TRIGGERS = 10_000


class Config(WireModel):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    dependencies: dict[str, DependencyConfig] = Field(default_factory=dict)
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    channel: ChannelConfig = Field(default_factory=ChannelConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    triggers: list[TriggerConfig] = Field(default_factory=list, max_length=MAX_CONFIG_TRIGGERS)

    @field_validator("triggers")
    @classmethod
    def _triggers_per_institution(cls, value: list[TriggerConfig]) -> list[TriggerConfig]:
        """Each institution's triggers obey the rules an API-set list does (one default,
        a keyword in one trigger only, at most 100), named by their place in the file."""
        groups: dict[str, list[int]] = {}
        for i, trigger in enumerate(value):
            groups.setdefault(trigger.institution, []).append(i)
        for institution, places in groups.items():
            mine = [value[i] for i in places]
            named = [f"triggers[{i}]" for i in places]
            for path, message in trigger_problems(mine, named.__getitem__):
                raise ValueError(f"{path}: {message} (institution {institution!r})")
        return value

    def triggers_of(self, institution_id: str) -> list[Trigger]:
        """The ``[[triggers]]`` of one institution, in the file's order."""
        return [
            Trigger.model_validate(t.model_dump(exclude={"institution"}))
            for t in self.triggers
            if t.institution == institution_id
        ]

    @field_validator("calendars")
    @classmethod
    def _calendar_names(cls, value: dict[str, CalendarConfig]) -> dict[str, CalendarConfig]:
        for name in value:
            if not valid_name(name):
                raise PydanticCustomError(  # as written: no "Value error, " before it
                    "calendar_name",
                    f"{name[:70]!r} is not a calendar's name (letters, digits, '-' and '_',"
                    " up to 64)",
                )
        return value


def expand_env(value: str, where: str) -> str:
    """Replace ``${NAME}`` with the environment variable, refusing a missing one."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def expand_secret(value: str, where: str) -> str:
    """A secret (``${NAME}`` expanded): one that expands to nothing is refused, since an
    empty app secret or verify token would let anyone pass the check it guards."""
    secret = expand_env(value, where)
    if not secret.strip():
        raise ConfigError(f"{where}: empty (an environment variable it names is set but blank)")
    return secret


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read ``path``, or ``./trilha.toml`` when it exists, else the defaults."""
    if path is None:
        default = Path("trilha.toml")
        if not default.exists():
            return Config()
        path = default
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{file}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{file}: {format_loc(tuple(err['loc']))}: {err['msg']}") from exc
