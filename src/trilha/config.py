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
    lease_seconds: float = Field(
        default=30.0,
        gt=0.1,
        le=3_600,
        allow_inf_nan=False,
        description=(
            "How long a worker holds an execution it claimed; a lease not renewed "
            "is free after this, whatever the heartbeat (renewed during `http` and "
            "`ai` calls)."
        ),
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        le=1_000,
        description=(
            "Executions a worker claims per round (they commit together): its executions in flight."
        ),
    )
    poll_interval_seconds: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description=(
            "How often an idle worker looks for due work when no notification woke "
            "it; timers wake at their time regardless."
        ),
    )
    heartbeat_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description=(
            "How often a running worker tells the store it is alive; a worker "
            "silent for three of these is taken for dead and its executions are "
            "claimed by others."
        ),
    )
    max_steps_per_turn: int = Field(
        default=1_000,
        ge=1,
        le=100_000,
        description=(
            "Steps one turn may take without waiting for the contact: a flow "
            "looping without waiting ends `failed`."
        ),
    )
    max_steps_per_execution: int = Field(
        default=10_000,
        ge=1,
        le=100_000_000,
        description=(
            "Steps one execution may take in its whole life: past it the execution ends `failed`."
        ),
    )
    max_steps_without_input: int = Field(
        default=1_000,
        ge=1,
        le=100_000_000,
        description=(
            "Steps in a row an execution may take without any reply from the "
            "contact (a loop through a delay): past it the execution ends `failed`."
        ),
    )
    max_input_chars: int = Field(
        default=4_096,
        ge=1,
        le=1_048_576,
        description=(
            "A reply longer than this (characters) takes the question's "
            "invalid-answer path before any check runs; 4,096 is WhatsApp's own "
            "limit for a text message."
        ),
    )
    max_value_bytes: int = Field(
        default=65_536,
        ge=64,
        le=64 * 2**20,
        description="The largest value a node may assign to one variable, measured as its JSON.",
    )
    max_state_bytes: int = Field(
        default=262_144,
        ge=256,
        le=256 * 2**20,
        description="The largest an execution's variables may grow, measured as their JSON.",
    )
    max_call_depth: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "How many sub-flows may run nested inside one another (`subflow` "
            "nodes); a call past it fails the calling node with kind `limit`."
        ),
    )
    max_pending_signals: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description=(
            "Signals an execution may hold that no `wait_event` node has taken yet; "
            "one more is refused (a sender cannot pile up signals nothing waits "
            "for)."
        ),
    )


class HttpConfig(WireModel):
    allow_private: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts (names or IP addresses) the http node may reach even though they are private."
        ),
    )
    default_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description=(
            "How long an `http` node's call waits for its answer when neither the "
            "node nor its dependency sets a timeout."
        ),
    )
    max_response_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description=(
            "The largest answer an `http` node reads, counted after decompression; "
            "past it the call stops with error kind `limit`."
        ),
    )


class BreakerConfig(WireModel):
    """A dependency's circuit breaker (see :mod:`trilha.resilience.breaker`)."""

    failure_rate: float = Field(
        default=DEFAULT_FAILURE_RATE,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="The share of failures, among the last `window` calls, that opens it.",
    )
    window: int = Field(
        default=DEFAULT_WINDOW,
        ge=1,
        le=1_000,
        description="How many of the latest calls the failure rate is measured over.",
    )
    min_calls: int = Field(
        default=DEFAULT_MIN_CALLS,
        ge=1,
        le=1_000,
        description="The fewest calls in the window before the rate may open it.",
    )
    open_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="How long an open breaker fails calls fast before it lets probes through.",
    )
    half_open_probes: int = Field(
        default=3,
        ge=1,
        le=1_000,
        description=(
            "Calls let through while half-open; once all are answered it closes "
            "when their failure rate is below `failure_rate`, else opens again."
        ),
    )
    failure_threshold: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Consecutive failures that open it whatever the rate; off unless set.",
    )
    count: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COUNT),
        max_length=200,
        description=(
            "What counts as the dependency failing: timeout, connect, 4xx, 5xx or a "
            "status; any other failure is the request's own (retried, then its "
            "fallback)."
        ),
    )

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

    base_url: str = Field(
        description=(
            "The service's http(s) URL; a node's `url` is a path relative to it (or "
            "an absolute URL on the same host: a request never leaves the "
            "dependency's host)."
        )
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Sent with every call; `${NAME}` reads an environment variable (a "
            "missing one fails the node with an error naming it)."
        ),
    )
    signing_secrets: list[str] = Field(
        default_factory=list,
        max_length=2,
        description=(
            "Standard Webhooks secrets signing what trilha POSTs to it as a webhook "
            "(the `handoff` desk's notices): the current one, and during a rotation "
            "the one it replaces."
        ),
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long a call waits for its answer, unless the node sets `timeoutSeconds`.",
    )
    health_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2_000,
        description=(
            "GET it to tell whether the dependency is back (2xx); a path relative "
            "to `base_url` or an absolute URL on the same host."
        ),
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="The retry policy of nodes calling this dependency that do not set their own.",
    )
    retry_rounds: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Rounds of a node's attempts (`max_attempts` each) while its calls fail "
            "in ways that count against this dependency (`breaker.count`): a round "
            "spent so leaves the execution `recovering` for a pause, then the next "
            "round begins; `1`: off."
        ),
    )
    retry_round_seconds: float = Field(
        default=1.0,
        gt=0,
        le=3_600,
        allow_inf_nan=False,
        description="The pause before round 2 (0.5 to 1 times this, jittered), doubling per round.",
    )
    breaker: BreakerConfig = Field(
        default_factory=BreakerConfig,
        description=(
            "The dependency's circuit breaker: after enough failures calls fail "
            "fast, and executions wait for the service to come back instead of "
            "spending their retries."
        ),
    )
    wait_probe_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3_600,
        allow_inf_nan=False,
        description=(
            "The shortest pause between two probes while an execution waits for the dependency."
        ),
    )
    institutions: list[Annotated[str, Field(pattern=INSTITUTION_PATTERN)]] | None = Field(
        default=None,
        description=(
            'Who may call it: institution ids, or `["*"]` for every institution; '
            "without it only the shared flows (`--flows DIR`) may."
        ),
    )
    idempotency_header: str = Field(
        default="Idempotency-Key",
        max_length=100,
        description=(
            "The header carrying an `http` node's idempotency key (the same on "
            'every attempt of a step); `""` sends none, for a service that refuses '
            "unknown headers."
        ),
    )
    idempotent: bool = Field(
        default=False,
        description=(
            "The service applies a request at most once per idempotency key, so a "
            "`POST` or `PATCH` whose answer was lost may be sent again."
        ),
    )

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

    institutions: list[Annotated[str, Field(pattern=INSTITUTION_PATTERN)]] | None = Field(
        default=None,
        max_length=10_000,
        description=(
            'Whose calendar it is: institution ids, or `["*"]`; every institution when absent.'
        ),
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

    phone_number_id: str = Field(
        pattern=r"^[0-9]{1,32}$",
        description="The number's id in Meta's WhatsApp Manager (not the phone number itself).",
    )
    institution: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_ID_PATTERN,
        description=("The institution whose flows answer the contacts who write to this number."),
    )
    access_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=4_096,
        description=(
            "This number's own token (`${NAME}`), for an institution with its own "
            "business account: no other institution's number is ever sent with it."
        ),
    )


class WhatsAppConfig(WireModel):
    """``[channel.whatsapp]``: Meta's WhatsApp Cloud API (:mod:`trilha.channels.whatsapp`)."""

    access_token: str = Field(
        min_length=1,
        max_length=4_096,
        description="The system user's token (`${NAME}`) that sends messages and reads media.",
    )
    app_secret: str = Field(
        min_length=1,
        max_length=4_096,
        description="The Meta app's secret (`${NAME}`): `X-Hub-Signature-256` is checked with it.",
    )
    verify_token: str = Field(
        min_length=1,
        max_length=4_096,
        description="What Meta's subscription check must send as `hub.verify_token`.",
    )
    api_base_url: str = Field(
        default=GRAPH_API_BASE_URL,
        min_length=1,
        max_length=2_000,
        description="The Graph API's address and version; tests point it at a stand-in.",
    )
    messages_per_second: float = Field(
        default=80.0,
        gt=0,
        le=1_000,
        allow_inf_nan=False,
        description=(
            "Sends per second per number, shared by every worker of the process "
            "(Meta's default throughput is 80)."
        ),
    )
    mark_read: bool = Field(
        default=False,
        description="Mark the contact's messages read (blue ticks) when the bot answers them.",
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="How long one call to the Graph API waits for its answer.",
    )
    numbers: list[WhatsAppNumber] = Field(
        min_length=1,
        max_length=10_000,
        description="The business numbers trilha answers on, each with the institution it serves.",
    )

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
    kind: Literal["terminal", "webhook", "memory", "whatsapp"] = Field(
        default="terminal",
        description=(
            "Which channel carries the bot's messages: `terminal` (printed), "
            "`webhook` (POSTed to `url`), `memory` (kept, for tests) or `whatsapp` "
            "(Meta's Cloud API, `[channel.whatsapp]`)."
        ),
    )
    whatsapp: WhatsAppConfig | None = Field(
        default=None, description='`kind = "whatsapp"`: the Cloud API\'s settings and numbers.'
    )
    url: str | None = Field(
        default=None, description='`kind = "webhook"`: where each of the bot\'s messages is POSTed.'
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            '`kind = "webhook"`: headers sent with every POST; `${NAME}` reads an '
            "environment variable."
        ),
    )
    signing_secrets: list[str] = Field(
        default_factory=list,
        max_length=2,
        description=(
            "Standard Webhooks secrets (`whsec_<base64>`, or `${NAME}`) that sign "
            "what trilha POSTs here: the current one, and during a rotation the one "
            "it replaces."
        ),
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long one delivery attempt waits for the channel's answer.",
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        le=1_000,
        description="Attempts per message before it is given up (`dead`: kept, listed, redriven).",
    )
    backoff_seconds: float = Field(
        default=0.5,
        gt=0,
        le=3_600,
        allow_inf_nan=False,
        description=(
            "The pause after a message's first failed attempt (with jitter: half to "
            "all of it); it doubles with each attempt up to `max_backoff_seconds`."
        ),
    )
    max_backoff_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="The longest pause between two attempts to deliver a message.",
    )
    renders: list[Renderable] = Field(
        default_factory=lambda: list(get_args(Renderable)),
        description=(
            "What the platform behind the webhook shows besides text: any of "
            "`buttons`, `list`, `media`, `location` (all by default); the rest is "
            "degraded (buttons to a list, a list to numbered text, media to caption "
            "and link, a place to its address and a map link) and the trail says "
            "so."
        ),
    )

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

    top_institutions: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description=(
            "Institutions beyond the first N seen share the `other` label (bounded cardinality)."
        ),
    )
    top_flows: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Flows beyond the first N seen share the `other` label, as institutions do.",
    )
    listen: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description=(
            "Serve `/metrics` on this separate `HOST:PORT` (`[::1]:9464` for IPv6) "
            "without a key, instead of on the API's address behind an admin key; "
            "also where `trilha metrics-server` listens when not told "
            "`--host`/`--port`."
        ),
    )

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


class TracingConfig(WireModel):
    """OpenTelemetry traces over OTLP/HTTP (the ``otel`` extra): a span per turn and per
    node, the API's requests and the ``http`` node's calls (:mod:`trilha.observability.tracing`)."""

    endpoint: str | None = Field(
        default=None,
        min_length=1,
        max_length=2_000,
        description=(
            "The collector's OTLP/HTTP traces URL (`http://127.0.0.1:4318/v1/traces`); "
            "unset (the default): no tracing at all. Needs `pip install 'trilha[otel]'`."
        ),
    )
    service_name: str = Field(
        default="trilha",
        min_length=1,
        max_length=200,
        description="The `service.name` every span of this process carries.",
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description=(
            "The share of new traces kept, from 0 to 1; a request that arrives with a "
            "`traceparent` follows its caller's decision."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=50,
        description=(
            "Sent with every export (a collector's API key); `${NAME}` reads an "
            "environment variable."
        ),
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=(
            "How long one export (its retries included) may take; exports run in the "
            "background and never hold up a turn."
        ),
    )
    max_queue_spans: int = Field(
        default=2_048,
        ge=1,
        le=1_000_000,
        description=(
            "Spans waiting for export beyond this are dropped (a collector that is "
            "away costs no more memory than this)."
        ),
    )

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"must be an http(s) URL with a host, not {value!r}")
        return value

    def resolved_headers(self) -> dict[str, str]:
        """The headers with ``${NAME}`` expanded (a missing variable is a ConfigError)."""
        return {k: expand_env(v, f"tracing.headers.{k}") for k, v in self.headers.items()}


LogLevel = Literal["DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "OFF"]


def _level(value: object) -> object:
    """Levels may be written in any case, and WARNING for WARN."""
    if isinstance(value, str):
        upper = value.strip().upper()
        return "WARN" if upper == "WARNING" else upper
    return value


class LoggingConfig(WireModel):
    """Process logs (stdout, a rotating file) and the stored trail of each execution."""

    level: LogLevel = Field(
        default="INFO",
        description="The least severe line printed to stdout and the file; OFF prints nothing.",
    )
    institutions: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="Per-institution levels, overriding `level` for that institution's executions.",
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description=(
            "`auto`: a readable console form when stdout is a terminal, else JSON "
            "lines; `json`: always JSON lines; `console`: always the readable form."
        ),
    )
    file: str | None = Field(
        default=None,
        min_length=1,
        description="Also write JSON lines to this file, rotated at `file_max_bytes`.",
    )
    file_max_bytes: int = Field(
        default=50 * 2**20, ge=1_024, description="The size at which `file` is rotated."
    )
    file_backups: int = Field(
        default=5, ge=0, le=1_000, description="How many rotated files are kept besides `file`."
    )
    store_level: LogLevel = Field(
        default="DEBUG",
        description=(
            "The least severe line kept in the store's trail; DEBUG (node entry and "
            "exit, the default) is what makes an execution's trail complete."
        ),
    )
    retention_days: float = Field(
        default=30.0,
        ge=0,
        le=36_500,
        allow_inf_nan=False,
        description=(
            "The trail of an execution that ended longer ago than this is deleted "
            "by the sweeper; 0 keeps trails forever."
        ),
    )

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


class InstitutionRetention(WireModel):
    """One institution's retention, overriding ``[retention] days``."""

    days: float | None = Field(
        default=None,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description=(
            "Executions of this institution that ended longer ago than this are erased"
            " (as `trilha forget` erases them); unset keeps them for ever."
        ),
    )


class RetentionConfig(WireModel):
    """How long ended executions are kept, per institution, before they are erased with
    everything stored through them (the erasure page of the docs)."""

    days: float | None = Field(
        default=None,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description=(
            "Executions that ended longer ago than this are erased, for every institution"
            " without its own `[retention.institutions.ID]`; unset (the default) keeps them."
        ),
    )
    institutions: dict[str, InstitutionRetention] = Field(
        default_factory=dict,
        description="Per-institution retention, by institution id, overriding `days`.",
    )
    interval_seconds: float = Field(
        default=3_600.0,
        ge=1,
        le=86_400,
        allow_inf_nan=False,
        description="How often `trilha serve` looks for executions past their retention.",
    )
    batch: int = Field(
        default=200,
        ge=1,
        le=1_000,
        description=(
            "Executions erased per transaction: what one retention step holds the store for."
        ),
    )

    def enabled(self) -> bool:
        return self.days is not None or any(r.days is not None for r in self.institutions.values())


class AlertRuleConfig(WireModel):
    """Changes to one of the default alert rules (:data:`trilha.core.alerts.DEFAULT_RULES`)."""

    enabled: bool = Field(
        default=True,
        description="`false` turns the rule off; a disabled rule that was firing resolves.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description=(
            "The value the rule fires above: a fraction for `error_rate` and "
            "`memory` (0.05 is 5 %), seconds for `slow_turn`, executions for "
            "`queue_backlog`, messages for `dead_messages`. Unset: the rule's "
            "default."
        ),
    )
    window_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description=("How far back `error_rate` and `slow_turn` look. Unset: the rule's default."),
    )
    for_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        description=(
            "How long a breach must last before a pending alert fires. Unset: the rule's default."
        ),
    )
    severity: Literal["critical", "warning"] | None = Field(
        default=None,
        description=(
            "What the notification says the alert is: `critical` or `warning`. "
            "Unset: the rule's default."
        ),
    )
    min_events: int | None = Field(
        default=None,
        ge=0,
        description=(
            "`error_rate`: with fewer node executions than this in the window the "
            "rule does not judge. Unset: the rule's default."
        ),
    )


class AlertWebhookConfig(WireModel):
    url: str = Field(
        description="Where each alert that fires or resolves is POSTed (an http(s) URL)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with every notification; `${NAME}` reads an environment variable.",
    )
    signing_secrets: list[str] = Field(
        default_factory=list,
        max_length=2,
        description=(
            "Standard Webhooks secrets (`whsec_<base64>`, or `${NAME}`) that sign "
            "what trilha POSTs here: the current one, and during a rotation the one "
            "it replaces."
        ),
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="How long one notification attempt waits for the answer.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description=(
            "Attempts per notification before it is given up; a timeout, a refused "
            "connection, 429 and 5xx are retried, another status is not."
        ),
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, not {value!r}")
        return value


class AlertsConfig(WireModel):
    enabled: bool = Field(
        default=True, description="`false`: the workers evaluate no rule and nothing is notified."
    )
    evaluation_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3_600,
        description="How often each running process evaluates the rules.",
    )
    rules: dict[str, AlertRuleConfig] = Field(
        default_factory=dict,
        description=(
            "Changes to the default alert rules, by rule: `error_rate`, `slow_turn`, "
            "`queue_backlog`, `memory`, `dead_messages`; every key is optional."
        ),
    )
    webhook: AlertWebhookConfig | None = Field(
        default=None,
        description=(
            "Optional: where firing and resolved alerts are POSTed (signed as "
            "Standard Webhooks say)."
        ),
    )

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

    rate_limit_per_second: float = Field(
        default=50.0,
        gt=0,
        le=100_000,
        allow_inf_nan=False,
        description="Requests per second each API key may make, on average.",
    )
    rate_limit_burst: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Requests each API key may make at once, in a burst, above its average rate.",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        le=100 * 2**20,
        description="Request bodies above this answer 413.",
    )
    max_queue_due: int = Field(
        default=10_000,
        ge=1,
        description=(
            "With more executions due and unclaimed than this, starting new ones "
            "answers 503 (replies to existing conversations are still accepted)."
        ),
    )
    idempotency_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 365,
        allow_inf_nan=False,
        description="How long an Idempotency-Key's response is kept for replay.",
    )
    sse_ping_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="How long a live event stream waits for news before it sends a keep-alive.",
    )
    max_streams_per_key: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description=(
            "Live event streams one API key may hold open at once (each is a "
            "connection and a file descriptor); beyond them a new one answers 429. "
            "A debugger tab holds one or two."
        ),
    )
    max_streams: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description=(
            "Live event streams the whole process may hold open at once; beyond "
            "them a new one answers 429. It is also kept below half the process's "
            "file descriptors (`ulimit -n`), whatever it is set to."
        ),
    )
    graph_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description=(
            "The longest a flow's drawing (GET /v1/executions/{id}/graph) may take "
            "to compute, waiting for a free slot included; past it the request "
            "answers 503 (kind limit). The largest flows validation accepts take "
            "about a second."
        ),
    )
    graph_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Drawings computed at once in the process, each in a thread; requests "
            "for other flows wait for a slot. Threads share the interpreter's lock, "
            "so more than one adds no speed, only contention with the event loop."
        ),
    )
    graph_cache_bytes: int = Field(
        default=64 * 2**20,
        ge=0,
        le=2**34,
        description=(
            "Bytes of computed drawings kept, per flow version, least recently used "
            "out first (the largest flow's is about 7 MB); 0 keeps none."
        ),
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description=(
            "A connection must send a request's complete headers within this many "
            "seconds of opening (between requests, of its first byte; an idle one "
            "is keep_alive_seconds'); past it the connection is closed (with a 408 "
            'when part of a request had arrived). Bounds slow-header ("slowloris") '
            "clients."
        ),
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3_600,
        allow_inf_nan=False,
        description=(
            "A request's body must arrive complete within this many seconds of its "
            "headers; past it the request answers 408 and the connection is closed."
        ),
    )
    keep_alive_seconds: int = Field(
        default=5,
        ge=1,
        le=600,
        description="An idle keep-alive connection is closed after this many seconds.",
    )
    max_connections: int = Field(
        default=1_000,
        ge=1,
        le=100_000,
        description=(
            "Open connections the process serves at once (live event streams "
            "included); a connection beyond them is answered 503 with Retry-After "
            "and closed."
        ),
    )
    max_calendars: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description=(
            "Calendars one institution may keep through `PUT /v1/calendars/{name}` "
            "(those of trilha.toml are not counted)."
        ),
    )
    max_bulk_jobs: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Bulk actions (`POST /v1/executions/bulk`, `trilha bulk`) one institution "
            "may have running at once; one more answers 429."
        ),
    )
    max_bulk_executions: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description=(
            "The most executions one bulk action acts on; a filter that matches more "
            "answers 422 (narrow it, or run several)."
        ),
    )
    bulk_batch_size: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Executions a bulk action reads and acts on between two pauses.",
    )
    bulk_pause_seconds: float = Field(
        default=0.1,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description=(
            "The pause between two batches of a bulk action, so the engine's own work "
            "(and other institutions' actions) goes on meanwhile."
        ),
    )
    public_url: str | None = Field(
        default=None,
        max_length=2_000,
        description=(
            "Where the handoff desk reaches this API "
            "(`https://trilha.example.com`): the desk's notices carry the handback "
            "and agent-messages URLs on it; without it they carry the paths alone "
            "(`/v1/conversations/.../handback`)."
        ),
    )

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

    institution: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_ID_PATTERN,
        description="The institution this trigger belongs to.",
    )


#: every ``[[triggers]]`` entry, all institutions together
MAX_CONFIG_TRIGGERS = 10_000


class Config(WireModel):
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description=(
            "How workers claim and run executions, and the limits every execution keeps to."
        ),
    )
    http: HttpConfig = Field(
        default_factory=HttpConfig,
        description="What the `http` node may reach and how long it waits.",
    )
    dependencies: dict[str, DependencyConfig] = Field(
        default_factory=dict,
        description=(
            "The services flows call by name (`http` and `ai` nodes): the CRM, the "
            "NLP, the human desk. Each has its address, headers, timeout, retries, "
            "circuit breaker and who may call it."
        ),
    )
    calendars: dict[str, CalendarConfig] = Field(
        default_factory=dict,
        description=(
            "Business hours flows read by name (`wait_until_open` nodes, `isOpen()` "
            "in conditions), for the institutions each names."
        ),
    )
    channel: ChannelConfig = Field(
        default_factory=ChannelConfig,
        description=(
            "Where the bot's messages go: the terminal, a webhook, memory (tests) "
            "or WhatsApp; and how their delivery is retried."
        ),
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="What `/metrics` shows, and where it is served."
    )
    tracing: TracingConfig = Field(
        default_factory=TracingConfig,
        description=(
            "OpenTelemetry traces of turns, nodes, API requests and `http` calls, "
            "exported over OTLP/HTTP (the `otel` extra)."
        ),
    )
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig,
        description=(
            "Process logs (stdout, a rotating file) and the trail each execution "
            "keeps in the store."
        ),
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description=(
            "How long ended executions are kept before they are erased, per institution"
            " (off by default)."
        ),
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig,
        description=(
            "The alert rules every running process evaluates, and the webhook that "
            "is told when one fires or resolves."
        ),
    )
    api: ApiConfig = Field(
        default_factory=ApiConfig,
        description=(
            "`trilha serve`'s limits, which keep one tenant or one burst from hurting the rest."
        ),
    )
    triggers: list[TriggerConfig] = Field(
        default_factory=list,
        max_length=MAX_CONFIG_TRIGGERS,
        description=(
            "Which flow a contact's message starts, per institution, until the "
            "institution sets its own with `PUT /v1/triggers`."
        ),
    )

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
