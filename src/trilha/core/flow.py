"""Flows and nodes: the pydantic models, their validation and the JSON Schema.

A flow is parsed in two passes. Pydantic checks each node's shape (so an
error names the field, as ``nodes[3].next``); :func:`check_flow` then checks
the graph (duplicate ids, dangling targets, a missing start, unreachable
nodes, expressions that do not parse). Both passes report
:class:`Problem` values instead of raising on the first one, because an
author fixing a flow wants every problem at once.

Node types are open: a third-party processor brings its own node model and
registers it in a :class:`NodeTypes` table, so this module never needs to
know every type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError

from trilha.core.calendars import CALENDAR_NAME_PATTERN, valid_name
from trilha.core.content import (
    LOCALIZED_TAGS,
    ContentFields,
    LanguageTag,
    Localized,
    content_problems,
    localized_texts,
    plain_templates,
)
from trilha.core.expressions import calendar_names, compile_expression
from trilha.core.keywords import MAX_KEYWORDS, Keyword, KeywordHit, KeywordIndex, repeated_keywords
from trilha.core.paths import READ_ONLY, is_valid_path, read_only
from trilha.core.patterns import compile_pattern
from trilha.core.schema_help import described
from trilha.core.signals import EventName
from trilha.core.templates import lint_template, template_expressions, template_paths
from trilha.core.tenancy import reference_denial, split_id
from trilha.core.wire import WireModel
from trilha.errors import ExpressionError, FlowValidationError

MAX_NODES = 5_000
MAX_FLOW_BYTES = 1_048_576
MAX_TEXT = 4_096
#: the longest a contact may be waited for (an input timeout, a session)
MAX_WAIT_SECONDS = 30 * 86_400
#: reminders one question may send before its input timeout
MAX_REMINDERS = 10
#: the longest ``settings.debounceMs``: a minute of typing
MAX_DEBOUNCE_MS = 60_000
#: a flow's ``interrupts``
MAX_INTERRUPTS = 50
#: where the flow schema is published: editors fetch it by this id, and files name it
#: in their ``$schema`` (``docs/schema/flow.schema.json`` keeps a copy)
FLOW_SCHEMA_ID: Final = "https://trilha.dev/schema/flow.schema.json"

#: a flow's own name; stored ids may carry an owner in front ("INSTITUTION/NAME")
FLOW_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
#: how a flow names another (``jump``, ``fallbackFlowId``): a name, or a stored id
FLOW_REFERENCE_PATTERN = r"^(?:[A-Za-z0-9_.\-]+/)?[A-Za-z0-9_.\-]+$"
NodeId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")]
VariableName = Annotated[str, Field(min_length=1, max_length=200)]
#: a MIME type or a family of them (``image/*``)
MIME_PATTERN = r"^[a-z]+/(?:\*|[a-z0-9][a-z0-9.+\-]*)$"


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a flow, located by a wire path such as ``nodes[3].next``."""

    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}: {prefix}{self.message}" if self.path else f"{prefix}{self.message}"


def format_loc(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as a wire path: ``('nodes', 3, 'next')`` -> ``nodes[3].next``."""
    out = ""
    for part in loc:
        if part in LOCALIZED_TAGS or part == "[key]":
            # which form of a text (plain or by language), or that a map's key is at fault
            # (its message names the key): not places in the flow
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ----------------------------------------------------------------------------- settings


class RetryPolicy(WireModel):
    """How a failing node is retried (used by the recovery layer)."""

    model_config = described(
        "How a node is retried after a transient failure (a timeout, a connection error,"
        " HTTP 429 or 5xx): attempts with pauses growing exponentially. Once the attempts"
        " are spent the node's `fallback` runs.",
        {"maxAttempts": 3, "initialIntervalSeconds": 1, "backoffCoefficient": 2},
        {
            "maxAttempts": 5,
            "initialIntervalSeconds": 0.5,
            "maxIntervalSeconds": 30,
            "nonRetryable": ["rate_limited"],
        },
        title="Retry policy",
    )

    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts in all, the first one included: 1 to 100 (default 3). A"
        " flow's `settings.retry` is capped at `settings.fallback.maxRetries` + 1.",
        examples=[3, 5],
    )
    initial_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        le=86_400,
        description="Seconds before the first retry: 0 to 86,400 (default 1); each later"
        " pause is `backoffCoefficient` times the one before.",
        examples=[1, 0.5],
    )
    backoff_coefficient: float = Field(
        default=2.0,
        ge=1,
        le=100,
        description="What each pause is multiplied by for the next: 1 (always the same"
        " pause) to 100 (default 2).",
        examples=[2, 1.5],
    )
    max_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="The longest pause between two attempts, in seconds: 0 to 86,400"
        " (default 60). An HTTP `Retry-After` may ask for longer.",
        examples=[60, 10],
    )
    jitter: bool = Field(
        default=True,
        description="Whether each pause is a random time up to its length (the default),"
        " so executions failing together do not all retry at the same moment.",
        examples=[True, False],
    )
    non_retryable: list[str] = Field(
        default_factory=list,
        description="Error kinds never retried (the fallback runs at once): `timeout`,"
        " `connection`, `rate_limited`, `server`, `client`, `validation`, `blocked`,"
        " `limit`, `forbidden`, `configuration`, `internal`.",
        examples=[["rate_limited"], ["timeout", "server"]],
    )


class FallbackSettings(WireModel):
    """The flow's global recovery settings (DESIGN §2, §4)."""

    model_config = described(
        "What happens when a node fails for good and has no `fallback` of its own: the"
        " fallback flow runs, else a person takes over (with `escalateToHuman`), else the"
        " execution ends `failed` with a message to the contact.",
        {"fallbackFlowId": "support", "escalateToHuman": True},
        {"maxRetries": 2, "timeoutSeconds": 120},
        title="Fallback settings",
    )

    enabled: bool = Field(
        default=True,
        description="Whether the fallback flow and the escalation run at all (default true);"
        " when false a node failing with no `fallback` ends the execution `failed`.",
        examples=[True, False],
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=100,
        description="The most retries `settings.retry` may make (its attempts are capped at"
        " this + 1): 0 to 100, default 3. A node's own `retry` is not capped.",
        examples=[3, 0],
    )
    timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="The longest turn, in seconds: from the moment the execution wakes"
        " (a reply, a timer) until it waits or ends, retries and their pauses included."
        " Past it the execution ends with `settings.timeoutMessage`. More than 0, at most"
        " 86,400; default 300.",
        examples=[300, 60],
    )
    fallback_flow_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=FLOW_REFERENCE_PATTERN,
        description="The flow run when a node fails with no `fallback` of its own (the"
        " failure is in its variable `error`): a flow's name (the institution's own, else a"
        " shared one) or `INSTITUTION/NAME`, at most 200 characters.",
        examples=["support", "recovery"],
    )
    escalate_to_human: bool = Field(
        default=False,
        description="When no fallback flow is set, or it failed too: hand the conversation"
        " to a person (queue `escalation`; outcome `escalated`) instead of ending `failed`.",
        examples=[True, False],
    )


class FlowSettings(WireModel):
    model_config = described(
        "Settings for the whole flow: how long to wait for the contact, what to say when"
        " the wait or a turn runs out, retries and recovery. Every setting has a default.",
        {"inputTimeoutSeconds": 3600, "timeoutMessage": "We did not hear back from you."},
        {
            "sessionTimeoutSeconds": 604800,
            "expiryMessage": "This conversation has expired. Write again to start over.",
            "retry": {"maxAttempts": 3},
            "fallback": {"escalateToHuman": True},
        },
        title="Flow settings",
    )

    fallback: FallbackSettings = Field(
        default_factory=FallbackSettings,
        description="What happens when a node fails for good and has no `fallback` of its"
        " own: a fallback flow, a person, or the end.",
        examples=[{"fallbackFlowId": "support", "escalateToHuman": True}],
    )
    input_timeout_seconds: float = Field(
        default=86_400.0,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="How long a question or a `wait_event` waits, in seconds, unless the"
        " node sets its own: more than 0, at most 2,592,000 (30 days); default 86,400 (a"
        " day). Then the node's `onTimeout`, else the end (outcome `timeout`) after"
        " `timeoutMessage`.",
        examples=[86400, 3600],
    )
    timeout_message: Localized = Field(
        default="Sorry, this is taking too long. We will get back to you.",
        description="Said when the contact does not answer in time (or a turn runs too"
        " long): a text, or a map of language tags to texts.",
        examples=[
            "We did not hear back from you. Write again any time.",
            {"pt-BR": "Não tivemos resposta.", "en": "We did not hear back from you."},
        ],
    )
    session_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="End an execution whose contact has been silent this long, in seconds"
        " (since their last message, the start, or an operator's resume), with outcome"
        " `expired`, wherever it waits; not while paused. More than 0, at most 2,592,000"
        " (30 days); none by default.",
        examples=[604800, 86400],
    )
    expiry_message: Localized | None = Field(
        default=None,
        description="Said when the session expires (a text, or a map of language tags to"
        " texts); nothing is said without one.",
        examples=["This conversation has expired. Write again to start over."],
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy,
        description="How nodes are retried after a transient failure, unless the node or"
        " its dependency has a policy of its own.",
        examples=[{"maxAttempts": 3, "initialIntervalSeconds": 1, "backoffCoefficient": 2}],
    )
    #: a corrupted execution with no valid checkpoint: start the flow again with its
    #: start variables, or end it with a message to the contact
    on_corruption: Literal["restart", "end"] = Field(
        default="restart",
        description="An execution whose stored state is damaged and has no valid"
        " checkpoint to go back to: `restart` runs the flow again from `start` with its"
        " start variables (the default); `end` ends it with a message to the contact.",
        examples=["restart", "end"],
    )
    debounce_ms: int = Field(
        default=0,
        ge=0,
        le=MAX_DEBOUNCE_MS,
        description="Contacts type in bursts: messages that arrive within this many"
        " milliseconds of each other are taken as one reply (their texts joined with a"
        " newline). The reply is taken once this long has passed after the last one;"
        " 0 (the default) takes each message as it comes. At most 60,000.",
        examples=[0, 1500],
    )


class NodeFallback(WireModel):
    model_config = described(
        "Where a node goes when it fails for good: an error that is not retried, or its"
        " retries spent. The failure is in the variable `error` (`flowId`, `nodeId`,"
        " `reason`, `type`, `message`, `kind`).",
        {"next": "sorry"},
        title="Node fallback",
    )

    next: NodeId = Field(
        description="The `id` of the node to go to when this one fails.", examples=["sorry"]
    )


class Interrupt(WireModel):
    """Words that take the contact to a node of the flow from wherever a question waits
    for a reply (``atendente``, ``menu``): checked before the question reads the reply,
    which the interrupt then consumes (see :mod:`trilha.core.keywords`)."""

    model_config = described(
        "Words that take the contact to a node of the flow from wherever a question waits"
        " for a reply, such as `atendente` or `menu`. They are looked for before the"
        " question reads the reply, which the interrupt then uses up.",
        {"keywords": ["atendente", "falar com humano"], "goTo": "human"},
        {"keywords": ["menu"], "goTo": "main_menu"},
        title="Interrupt",
    )

    keywords: list[Keyword] = Field(
        min_length=1,
        max_length=MAX_KEYWORDS,
        description="Whole words or phrases, matched ignoring case and accents: 1 to 50,"
        " each at most 100 characters. When a reply holds several, the keyword with the"
        " most words wins, then the first listed.",
        examples=[["atendente", "falar com humano"], ["menu"]],
    )
    go_to: NodeId = Field(
        description="The node of this flow the contact is taken to.", examples=["human"]
    )


# ----------------------------------------------------------------------------- nodes


class NodeBase(WireModel):
    """Fields every node has. Subclasses set ``type`` to a Literal and list their targets."""

    #: names of fields holding a single node id to jump to (checked for dangling targets)
    target_fields: ClassVar[tuple[str, ...]] = ("next",)
    #: whether the node may end a path without a ``next`` (end, handoff, jump)
    terminal: ClassVar[bool] = False

    id: NodeId = Field(
        description="The node's name, unique in the flow: what `start`, `next` and every"
        " other target name. Letters, digits and `_ . : -`, at most 100 characters.",
        examples=["ask_name", "welcome"],
    )
    type: str
    label: str | None = Field(
        default=None,
        max_length=200,
        description="A short name shown for the node in the debugger's graph instead of its"
        " `id`; never said to the contact. At most 200 characters.",
        examples=["Ask for the name"],
    )
    next: NodeId | None = Field(
        default=None,
        description="The `id` of the node to go to after this one. Without one the"
        " execution completes after this node.",
        examples=["confirm"],
    )
    fallback: NodeFallback | None = Field(
        default=None,
        description="Where to go when this node fails for good (an error not retried, or"
        " its retries spent). Without one the flow's `settings.fallback` decides.",
        examples=[{"next": "sorry"}],
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3_600,
        description="The longest one attempt of this node may take, in seconds: more than 0,"
        " at most 3,600. A slower attempt is cancelled and counts as a `timeout` failure"
        " (retried). Unset: a call's dependency's own timeout applies.",
        examples=[10, 2.5],
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="How this node is retried after a transient failure; wins over its"
        " dependency's policy and the flow's `settings.retry`.",
        examples=[{"maxAttempts": 5, "initialIntervalSeconds": 0.5}],
    )

    def targets(self) -> Iterator[tuple[str, str]]:
        """Yield ``(wire path relative to the node, target node id)`` for every edge."""
        for name in self.target_fields:
            value = getattr(self, name)
            if value is not None:
                yield to_wire(name), value
        if self.fallback is not None:
            yield "fallback.next", self.fallback.next

    def expressions(self) -> Iterator[tuple[str, str]]:
        """Yield ``(wire path, source)`` for every expression the node evaluates."""
        return iter(())

    def flow_references(self) -> Iterator[tuple[str, str]]:
        """Yield ``(wire path, flow id)`` for every other flow the node may enter, so
        publishing checks who owns it (:mod:`trilha.core.tenancy`)."""
        return iter(())

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        """Yield ``(wire path, template, in a loop)`` for every template the node
        renders, so publishing lints them (``in a loop``: ``this`` is an item)."""
        if isinstance(self, ContentFields):
            yield from _said_templates(self)


def _node_type(name: str) -> Any:
    """The ``type`` field of a node model: its help names the type."""
    return Field(
        description=f"What kind of node this is: `{name}`, which decides its other properties.",
        examples=[name],
    )


def to_wire(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class MessageNode(ContentFields, NodeBase):
    """Send a message and move on: a text, buttons, a list, media or a location."""

    model_config = described(
        "Sends a message and goes on to `next`: a text (a template, or a map of languages),"
        " with buttons, a list, media or a location if wanted.",
        {
            "id": "welcome",
            "type": "message",
            "text": "Hi {{contact.name}}! Welcome.",
            "next": "ask_name",
        },
        {
            "id": "menu",
            "type": "message",
            "text": {"pt-BR": "Como podemos ajudar?", "en": "How can we help?"},
            "buttons": [{"id": "book", "title": "Book"}, {"id": "talk", "title": "Talk to us"}],
            "next": "ask_choice",
        },
        {
            "id": "map",
            "type": "message",
            "media": {"kind": "image", "url": "https://example.com/map.png", "caption": "Our map"},
            "next": "bye",
        },
        title="Message",
    )

    type: Literal["message"] = _node_type("message")
    text: Localized | None = Field(
        default=None,
        description="What to say (a template, or a map of language tags to templates), at"
        " most 4,096 characters; optional with media or a location.",
        examples=["Hi {{contact.name}}! Welcome.", {"pt-BR": "Olá!", "en": "Hello!"}],
    )


class ChoiceOption(WireModel):
    model_config = described(
        "One option of a `choice` answer. A reply picks it by its `value`, its `label`, one"
        " of its `synonyms` or its number in the list (1, 2, ...), ignoring case and"
        " accents; its `value` is what is saved.",
        {"value": "yes", "label": "Yes", "synonyms": ["sim", "y"]},
        {"value": "morning"},
        title="Choice option",
    )

    value: str = Field(
        min_length=1,
        max_length=200,
        description="What is saved when this option is picked: at most 200 characters.",
        examples=["yes", "morning"],
    )
    label: str | None = Field(
        default=None,
        max_length=200,
        description="The option's words as the contact reads them; a reply may use them"
        " too. At most 200 characters.",
        examples=["Yes, please"],
    )
    #: extra words the contact may type to pick this option
    synonyms: list[str] = Field(
        default_factory=list,
        description="Other words a reply may use to pick this option.",
        examples=[["sim", "y"]],
    )


class AnswerRule(WireModel):
    """How a question's answer is validated (see :mod:`trilha.core.answers`)."""

    model_config = described(
        "How a question's reply is checked before it is saved. A reply that fails is"
        " invalid: the question is asked again with its `invalidText`.",
        {"kind": "number", "min": 1, "max": 10},
        {"kind": "choice", "options": ["yes", "no"]},
        {"kind": "regex", "pattern": "[0-9]{5}-?[0-9]{3}"},
        {"kind": "media", "accept": ["image/*", "application/pdf"]},
        title="Answer check",
    )

    kind: Literal["text", "number", "email", "phone", "regex", "choice", "media", "location"] = (
        Field(
            default="text",
            description="What a valid answer is. `choice` takes its options from `options`, or"
            " from the question's buttons or list rows; `media` and `location` want a reply of"
            " that type.",
            examples=["text", "number", "choice"],
        )
    )
    pattern: str | None = Field(
        default=None,
        max_length=1_000,
        description="For `regex`: the pattern the whole reply must match (RE2 syntax: no"
        " back-references or look-arounds), at most 1,000 characters.",
        examples=["[0-9]{5}-?[0-9]{3}", "[A-Z]{3}[0-9]{4}"],
    )
    options: list[ChoiceOption | str] = Field(
        default_factory=list,
        description="For `choice`: the options, each a value or `{value, label, synonyms}`."
        " Empty: the question's buttons or list rows are the options.",
        examples=[["yes", "no"], [{"value": "am", "label": "Morning"}, "afternoon"]],
    )
    accept: list[Annotated[str, Field(pattern=MIME_PATTERN, max_length=255)]] = Field(
        default_factory=list,
        max_length=50,
        description="For `media`: the MIME types accepted, such as `image/*` or"
        " `application/pdf` (any when empty); at most 50.",
        examples=[["image/*", "application/pdf"]],
    )
    min: float | None = Field(
        default=None,
        description="For `number`: the smallest number accepted.",
        examples=[1, 0.5],
    )
    max: float | None = Field(
        default=None,
        description="For `number`: the largest number accepted.",
        examples=[10, 120],
    )
    min_length: int | None = Field(
        default=None,
        ge=0,
        description="The fewest characters a typed reply may have (spaces around it not counted).",
        examples=[2],
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TEXT,
        description="The most characters a typed reply may have: 1 to 4,096.",
        examples=[100],
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)  # its ValueError names why: the field's problem
        return value

    def choice_options(self) -> list[ChoiceOption]:
        return [ChoiceOption(value=o) if isinstance(o, str) else o for o in self.options]


class Reminder(ContentFields):
    """Said once while a question waits, ``afterSeconds`` after it asked (or after the
    contact's last reply to it), if no reply came: a text and content like a message's."""

    model_config = described(
        "Said once while a question waits, `afterSeconds` after it asked (or after the"
        " contact's last reply to it), if no reply came. It may carry buttons, a list,"
        " media or a location like a message.",
        {"afterSeconds": 3600, "text": "Are you still there?"},
        {
            "afterSeconds": 82800,
            "text": "Your booking is kept until tomorrow. Confirm?",
            "buttons": [{"id": "yes", "title": "Confirm"}],
        },
        title="Reminder",
    )

    after_seconds: float = Field(
        gt=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Seconds after the question (or the contact's last reply to it); each"
        " reminder later than the one before and earlier than the input timeout.",
        examples=[3600, 82800],
    )
    text: Localized | None = Field(
        default=None,
        description="What to say (a template, or a map of language tags to templates);"
        " optional with media or a location.",
        examples=["Are you still there?", {"pt-BR": "Ainda está aí?", "en": "Still there?"}],
    )


class QuestionNode(ContentFields, NodeBase):
    """Ask, wait for the reply, validate it and save it in ``variable``."""

    target_fields = ("next", "on_invalid", "on_timeout")

    model_config = described(
        "Asks, waits for the reply, checks it (`validate`) and saves it in `variable`, then"
        " goes to `next`. An invalid reply is asked again with `invalidText`, up to"
        " `maxInvalid` times, then `onInvalid` (else the end, outcome `invalid_input`). With"
        " no reply within the input timeout: `onTimeout` (else the end, outcome `timeout`).",
        {
            "id": "ask_day",
            "type": "question",
            "text": "Which day suits you?",
            "variable": "day",
            "buttons": [{"id": "today", "title": "Today"}, {"id": "tomorrow", "title": "Tomorrow"}],
            "validate": {"kind": "choice"},
            "invalidText": "Please pick one of the buttons.",
            "maxInvalid": 2,
            "onInvalid": "human",
            "onTimeout": "bye",
            "next": "confirm",
        },
        {
            "id": "ask_age",
            "type": "question",
            "text": "How old are you?",
            "variable": "age",
            "validate": {"kind": "number", "min": 0, "max": 120},
            "reminders": [{"afterSeconds": 3600, "text": "Are you still there?"}],
            "next": "route",
        },
        title="Question",
    )

    type: Literal["question"] = _node_type("question")
    text: Localized = Field(
        description="The question (a template, or a map of languages), at most 4,096 characters.",
        examples=["What is your name?", {"pt-BR": "Qual é o seu nome?", "en": "Your name?"}],
    )
    variable: VariableName = Field(
        description="Where the valid reply is saved: a variable path such as `name` or"
        " `patient.name`, at most 200 characters.",
        examples=["name", "patient.birthDate"],
    )
    validate_: AnswerRule = Field(
        default_factory=AnswerRule,
        alias="validate",
        description="How the reply is checked; by default any text is valid.",
        examples=[{"kind": "number", "min": 1, "max": 10}, {"kind": "email"}],
    )
    invalid_text: Localized | None = Field(
        default=None,
        description="Said instead of the question after an invalid answer.",
        examples=["Please answer with a number from 1 to 10."],
    )
    max_invalid: int = Field(
        default=2,
        ge=0,
        le=100,
        description="How many invalid replies are asked again before giving up: 0 to 100"
        " (default 2). Then `onInvalid`, else the end (outcome `invalid_input`).",
        examples=[2, 0],
    )
    on_invalid: NodeId | None = Field(
        default=None,
        description="Where to go after too many invalid replies (`maxInvalid`); without it"
        " the execution ends with outcome `invalid_input`.",
        examples=["human"],
    )
    on_timeout: NodeId | None = Field(
        default=None,
        description="Where to go when no reply came in time; without it the execution ends"
        " with outcome `timeout` after `settings.timeoutMessage`.",
        examples=["bye"],
    )
    input_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="How long to wait for the reply, in seconds (more than 0, at most 30"
        " days); overrides `settings.inputTimeoutSeconds`.",
        examples=[3600, 600],
    )
    reminders: list[Reminder] = Field(
        default_factory=list,
        max_length=MAX_REMINDERS,
        description="Nudges said while no reply came, each once at its time; then the"
        " input timeout takes `onTimeout`. At most 10.",
        examples=[[{"afterSeconds": 3600, "text": "Are you still there?"}]],
    )

    def expressions(self) -> Iterator[tuple[str, str]]:
        yield from super().expressions()
        for j, reminder in enumerate(self.reminders):
            for path, source in reminder.expressions():
                yield f"reminders[{j}].{path}", source

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield from super().templates()
        for j, reminder in enumerate(self.reminders):
            for path, template, in_loop in _said_templates(reminder):
                yield f"reminders[{j}].{path}", template, in_loop


def _said_templates(node: ContentFields) -> Iterator[tuple[str, str, bool]]:
    texts = list(localized_texts(node, getattr(node, "text", None)))
    invalid = getattr(node, "invalid_text", None)
    if invalid is not None:
        texts.append(("invalidText", invalid))
    for path, value in texts:
        in_loop = ".rowsFrom." in path
        if isinstance(value, str):
            yield path, value, in_loop
        else:
            for tag, text in value.items():
                yield f"{path}.{tag}", text, in_loop
    for path, template in plain_templates(node):
        yield path, template, ".rowsFrom." in path


def _value_templates(path: str, value: Any) -> Iterator[tuple[str, str, bool]]:
    """The strings inside a JSON value (a request body, a set node's literal)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item, False
        elif isinstance(item, dict):
            stack.extend((f"{where}.{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))


class Branch(WireModel):
    model_config = described(
        "One way out of a `condition` node: taken when its `when` holds.",
        {"when": "age >= 18", "next": "adult"},
        {"when": "intent.intent == 'billing' and contact.vip == true", "next": "vip_billing"},
        title="Branch",
    )

    when: str = Field(
        min_length=1,
        max_length=2_000,
        description="An expression on the variables, such as `age >= 18 and contact.vip =="
        " true`: at most 2,000 characters, checked when the flow is published.",
        examples=["age >= 18", "day == 'today'"],
    )
    next: NodeId = Field(description="The node to go to when `when` holds.", examples=["adult"])


class ConditionNode(NodeBase):
    target_fields = ("default",)

    model_config = described(
        "Goes to the `next` of the first branch whose `when` holds, else to `default`.",
        {
            "id": "route",
            "type": "condition",
            "branches": [{"when": "age >= 18", "next": "adult"}],
            "default": "minor",
        },
        title="Condition",
    )

    type: Literal["condition"] = _node_type("condition")
    branches: list[Branch] = Field(
        min_length=1,
        max_length=200,
        description="The branches, tried in order: 1 to 200.",
        examples=[[{"when": "age >= 18", "next": "adult"}, {"when": "age >= 13", "next": "teen"}]],
    )
    default: NodeId | None = Field(
        default=None,
        description="Where to go when no branch holds; without it the execution completes.",
        examples=["minor"],
    )

    def targets(self) -> Iterator[tuple[str, str]]:
        yield from super().targets()
        for i, branch in enumerate(self.branches):
            yield f"branches[{i}].next", branch.next

    def expressions(self) -> Iterator[tuple[str, str]]:
        for i, branch in enumerate(self.branches):
            yield f"branches[{i}].when", branch.when


class SetNode(NodeBase):
    """Assign variables: ``variables`` are literals (strings rendered as templates),
    ``expressions`` are evaluated by the safe evaluator."""

    model_config = described(
        "Sets variables, then goes to `next`: `variables` to values as written (strings are"
        " templates), `expressions` to what an expression gives.",
        {
            "id": "init",
            "type": "set",
            "variables": {"attempts": 0, "greeting": "Hi {{contact.name}}"},
            "expressions": {"total": "price * qty"},
            "next": "ask_name",
        },
        title="Set variables",
    )

    type: Literal["set"] = _node_type("set")
    variables: dict[VariableName, Any] = Field(
        default_factory=dict,
        description="Variables set to values as written, by variable path: a string is a"
        ' template (`"{{x}}"` alone keeps x\'s type); other JSON values are kept as they are.',
        examples=[{"attempts": 0, "greeting": "Hi {{contact.name}}", "contact.language": "en"}],
    )
    expressions_: dict[VariableName, str] = Field(
        default_factory=dict,
        alias="expressions",
        description="Variables set to the value of an expression, by variable path, such as"
        " `price * qty`; checked when the flow is published.",
        examples=[{"total": "price * qty", "adult": "age >= 18"}],
    )

    def expressions(self) -> Iterator[tuple[str, str]]:
        for name, source in self.expressions_.items():
            yield f"expressions.{name}", source

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        for name, value in self.variables.items():
            yield from _value_templates(f"variables.{name}", value)


class DelayNode(NodeBase):
    model_config = described(
        "Waits `seconds` on a durable timer, then goes to `next`: the execution sleeps in"
        " the store, so a restart does not lose it. Replies that come meanwhile wait for the"
        " next question.",
        {"id": "pause", "type": "delay", "seconds": 3600, "next": "follow_up"},
        title="Delay",
    )

    type: Literal["delay"] = _node_type("delay")
    seconds: float = Field(
        ge=0,
        le=30 * 86_400,
        description="How long to wait, in seconds: 0 to 2,592,000 (30 days).",
        examples=[3600, 30],
    )


class WaitUntilOpenNode(NodeBase):
    """Wait until the institution's ``calendar`` is open (``waiting_delay``, a durable
    timer), then follow ``next``; at once when it is open already."""

    model_config = described(
        "Waits until the institution's `calendar` next opens (at once when it is open), then"
        " goes to `next`. A calendar the institution lacks, or one that does not open within"
        " 366 days, fails the node (its `fallback`).",
        {"id": "wait_office", "type": "wait_until_open", "calendar": "clinic", "next": "human"},
        title="Wait until open",
    )

    type: Literal["wait_until_open"] = _node_type("wait_until_open")
    calendar: str = Field(
        min_length=1,
        max_length=64,
        description="The calendar's name (`PUT /v1/calendars/{name}`, or `[calendars.NAME]`"
        " in trilha.toml); the running institution's. Letters, digits, `-` and `_`, at most"
        " 64 characters.",
        examples=["clinic", "support-hours"],
        json_schema_extra={"pattern": CALENDAR_NAME_PATTERN},
    )

    @field_validator("calendar")
    @classmethod
    def _calendar_name(cls, value: str) -> str:
        if not valid_name(value):
            raise ValueError(
                f"{value!r} is not a calendar's name (letters, digits, '-' and '_',"
                " up to 64, such as 'clinic')"
            )
        return value


class WaitEventNode(NodeBase):
    """Wait for an event from outside the conversation (a payment confirmed...), sent as
    a signal (``POST /v1/executions/{id}/signals/{event}``); its payload lands in
    ``saveAs``. A signal sent before the execution gets here is kept and taken here."""

    target_fields = ("next", "on_timeout")

    model_config = described(
        "Waits for an event from outside the conversation (a payment confirmed, an approval)"
        " sent as a signal: `POST /v1/executions/{id}/signals/{event}` or `trilha signal`."
        " Its payload goes to `saveAs`, then `next`. A signal sent before the execution got"
        " here is taken at once.",
        {
            "id": "wait_payment",
            "type": "wait_event",
            "event": "payment.confirmed",
            "saveAs": "payment",
            "inputTimeoutSeconds": 3600,
            "onTimeout": "remind",
            "next": "thanks",
        },
        title="Wait for an event",
    )

    type: Literal["wait_event"] = _node_type("wait_event")
    event: EventName = Field(
        description="The event's name, e.g. `payment.confirmed`: letters, digits and"
        " `_ . : -`, at most 100 characters.",
        examples=["payment.confirmed", "refund:approved"],
    )
    save_as: VariableName | None = Field(
        default=None,
        description="Where the signal's payload goes (any JSON): a variable path.",
        examples=["payment"],
    )
    input_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=30 * 86_400,
        allow_inf_nan=False,
        description="How long to wait, in seconds (more than 0, at most 30 days; default:"
        " the flow's `settings.inputTimeoutSeconds`).",
        examples=[3600, 86400],
    )
    on_timeout: NodeId | None = Field(
        default=None,
        description="Where to go when no signal came in time; without it the execution"
        " ends with outcome `timeout` (after `settings.timeoutMessage`), as a question's does.",
        examples=["remind"],
    )

    @field_validator("save_as")
    @classmethod
    def _save_as_is_a_path(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_path(value):
            raise ValueError(f"'{value}' is not a valid variable path")
        return value


class JumpNode(NodeBase):
    terminal = True

    model_config = described(
        "Goes on in another flow, in the same execution, at its `start` or at `nodeId`; it"
        " does not come back (a `subflow` does). The institution's own flow of that name is"
        " used, else a shared one.",
        {"id": "to_support", "type": "jump", "flowId": "support"},
        {
            "id": "to_billing",
            "type": "jump",
            "flowId": "support",
            "version": 3,
            "nodeId": "billing",
        },
        title="Jump to another flow",
    )

    type: Literal["jump"] = _node_type("jump")
    flow_id: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_REFERENCE_PATTERN,
        description="The flow to go on in: its name (the institution's own, else a shared"
        " one) or `INSTITUTION/NAME` of the running institution, at most 200 characters.",
        examples=["support"],
    )
    version: int | None = Field(
        default=None,
        ge=1,
        description="Which version of that flow (1 or more); its latest when left out.",
        examples=[3],
    )
    node_id: NodeId | None = Field(
        default=None,
        description="The node of that flow to begin at; its `start` when left out.",
        examples=["billing"],
    )

    def flow_references(self) -> Iterator[tuple[str, str]]:
        yield "flowId", self.flow_id


#: how a sub-flow ended, as its caller's ``branches`` name them
SubflowOutcome = Literal["completed", "escalated", "failed", "timeout", "invalid_input"]
#: the callee variable handed back when a ``subflow`` node names no ``output``
SUBFLOW_RESULT = "result"


class SubflowNode(NodeBase):
    """Run another flow in the same execution and come back (a call, where ``jump`` is a
    one-way move): the called flow sees only ``input`` as its variables, and when it
    ends its ``output`` variables are handed back and the caller goes on at the branch
    for how it ended (see :mod:`trilha.core.frames`)."""

    model_config = described(
        "Runs another flow in the same execution and comes back. The called flow sees only"
        " `input` as its variables; when it ends, `output` hands values back and the caller"
        " goes on at the branch for how it ended (`branches`), else at `next`.",
        {
            "id": "get_address",
            "type": "subflow",
            "flowId": "address",
            "input": {"name": "{{contact.name}}"},
            "output": {"address": "result"},
            "branches": {"failed": "human"},
            "next": "confirm",
        },
        title="Sub-flow",
    )

    type: Literal["subflow"] = _node_type("subflow")
    flow_id: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_REFERENCE_PATTERN,
        description="The flow to call: its name (the institution's own, else a shared one)"
        " or `INSTITUTION/NAME` of the running institution, at most 200 characters.",
        examples=["address"],
    )
    #: the called flow's version; its latest at the time of the call by default
    version: int | None = Field(
        default=None,
        ge=1,
        description="Which version of that flow (1 or more); its latest when the call is"
        " made, by default.",
        examples=[2],
    )
    input: dict[VariableName, Any] = Field(
        default_factory=dict,
        max_length=100,
        description="The called flow's variables (it sees no others): templates rendered"
        " with the caller's variables. At most 100.",
        examples=[{"name": "{{contact.name}}", "attempts": 0}],
    )
    output: dict[VariableName, VariableName] = Field(
        default_factory=lambda: {SUBFLOW_RESULT: SUBFLOW_RESULT},
        max_length=100,
        description="Caller variable -> the called flow's variable handed back into it"
        " (null when the called flow did not set it). Default: `result` into `result`. At"
        " most 100.",
        examples=[{"address": "result"}, {"zip": "address.zip", "city": "address.city"}],
    )
    branches: dict[SubflowOutcome, NodeId] = Field(
        default_factory=dict,
        description="Where the caller goes on, by how the called flow ended. A missing"
        " branch falls to `next`, except `timeout`: the whole execution times out. Outcomes:"
        " `completed`, `escalated`, `failed`, `timeout`, `invalid_input`.",
        examples=[{"failed": "human", "timeout": "bye"}],
    )

    def targets(self) -> Iterator[tuple[str, str]]:
        yield from super().targets()
        for outcome, target in self.branches.items():
            yield f"branches.{outcome}", target

    def flow_references(self) -> Iterator[tuple[str, str]]:
        yield "flowId", self.flow_id

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        for name, value in self.input.items():
            yield from _value_templates(f"input.{name}", value)


class HandoffNode(ContentFields, NodeBase):
    """Hand the conversation to a person's queue: for good (``mode: end``), or until the
    person hands it back (``mode: wait``, see :mod:`trilha.core.hold`)."""

    terminal = True
    target_fields = ("next", "on_return_timeout")

    model_config = described(
        "Hands the conversation to a person's `queue`, saying `text` first. `mode: end` (the"
        " default) ends the execution (outcome `escalated`); `mode: wait` pauses it while a"
        " person holds the conversation, and goes on at `next` when it is handed back.",
        {
            "id": "human",
            "type": "handoff",
            "queue": "support",
            "text": "A person will answer you shortly.",
            "reason": "Asked for a person",
        },
        {
            "id": "desk",
            "type": "handoff",
            "queue": "billing",
            "mode": "wait",
            "returnAfterSeconds": 1800,
            "onReturnTimeout": "menu",
            "next": "menu",
        },
        title="Handoff to a person",
    )

    type: Literal["handoff"] = _node_type("handoff")
    next: NodeId | None = Field(
        default=None,
        description="`wait` only: where the conversation goes on when a person hands it"
        " back (unless the handback names a node); a `wait` handoff without one is warned"
        " about when the flow is published.",
        examples=["menu"],
    )
    queue: str = Field(
        min_length=1,
        max_length=200,
        description="The people's queue the conversation goes to, as the handoff desk knows"
        " it: at most 200 characters.",
        examples=["support", "sales"],
    )
    text: Localized | None = Field(
        default=None,
        description="Said to the contact first (a template, or a map of languages).",
        examples=["A person will answer you shortly."],
    )
    reason: str | None = Field(
        default=None,
        max_length=1_000,
        description="Why the conversation is handed over, for the person taking it (a"
        " template): at most 1,000 characters.",
        examples=["Asked for a person", "Problem: {{problem}}"],
    )
    mode: Literal["end", "wait"] = Field(
        default="end",
        description="`end`: the execution ends (outcome `escalated`). `wait`: it is paused"
        " (`waitingFor: human`) while a person holds the conversation, and goes on at"
        " `next` (or the node the handback names) when it is handed back.",
        examples=["end", "wait"],
    )
    return_after_seconds: float | None = Field(
        default=None,
        gt=0,
        le=30 * 86_400,
        allow_inf_nan=False,
        description="`wait` only: with no agent message in this time, the bot takes the"
        " conversation back by itself, at `onReturnTimeout` (else `next`). In seconds: more"
        " than 0, at most 30 days.",
        examples=[1800],
    )
    on_return_timeout: NodeId | None = Field(
        default=None,
        description="`wait` only: where the bot takes the conversation back when no"
        " person answered within `returnAfterSeconds` (default: `next`).",
        examples=["menu"],
    )

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield from super().templates()
        if self.reason is not None:
            yield "reason", self.reason, False


class EndNode(ContentFields, NodeBase):
    """Complete the execution, optionally saying goodbye."""

    terminal = True

    model_config = described(
        "Completes the execution, saying `text` last if it has one.",
        {"id": "bye", "type": "end", "text": "Thanks, see you soon!"},
        {"id": "done", "type": "end"},
        title="End",
    )

    type: Literal["end"] = _node_type("end")
    text: Localized | None = Field(
        default=None,
        description="Said to the contact last (a template, or a map of languages).",
        examples=["Thanks, see you soon!", {"pt-BR": "Até logo!", "en": "See you!"}],
    )


class WaitForDependency(WireModel):
    """While the node's dependency is unavailable (its breaker open), the execution
    waits for it durably (``recovering``, probing) instead of falling back at once;
    after ``maxWaitSeconds`` the node falls back."""

    model_config = described(
        "While the node's dependency is unavailable (its circuit breaker open), wait for it"
        " to come back instead of failing at once; past `maxWaitSeconds` the node fails"
        " (its `fallback`).",
        {"maxWaitSeconds": 600},
        title="Wait for the dependency",
    )

    max_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="The longest wait, in seconds: more than 0, at most 86,400 (a day);"
        " default 300.",
        examples=[600, 300],
    )


def _wait_needs_dependency(
    cls: type[NodeBase], value: WaitForDependency | None, info: ValidationInfo
) -> WaitForDependency | None:
    if value is not None and info.data.get("dependency") is None:
        raise ValueError("waitForDependency needs a declared dependency")
    return value


class HttpNode(NodeBase):
    model_config = described(
        "Calls a declared `dependency` (`url` is then a path under its base URL) or a public"
        " URL, saves the JSON reply in `saveAs` and goes to `next`. Transient failures (a"
        " timeout, a connection error, HTTP 429 or 5xx) are retried; a failure for good goes"
        " to `fallback`.",
        {
            "id": "book",
            "type": "http",
            "dependency": "agenda",
            "method": "POST",
            "url": "/bookings",
            "headers": {"Accept": "application/json"},
            "body": {"slot": "{{slot}}", "name": "{{name}}"},
            "saveAs": "booking",
            "timeoutSeconds": 10,
            "waitForDependency": {"maxWaitSeconds": 600},
            "fallback": {"next": "sorry"},
            "next": "confirm",
        },
        {
            "id": "slots",
            "type": "http",
            "dependency": "agenda",
            "url": "/slots?day={{day}}",
            "saveAs": "slots",
            "next": "pick_slot",
        },
        title="HTTP call",
    )

    type: Literal["http"] = _node_type("http")
    dependency: str | None = Field(
        default=None,
        max_length=200,
        description="A dependency declared in trilha.toml (`[dependencies.NAME]`): `url` is"
        " then a path under its base URL, and its timeout, retries and circuit breaker"
        " apply. Without one `url` is a full public URL.",
        examples=["agenda"],
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="GET",
        description="The HTTP method: `GET` (the default), `POST`, `PUT`, `PATCH` or `DELETE`.",
        examples=["GET", "POST"],
    )
    url: str = Field(
        min_length=1,
        max_length=2_000,
        description="Where the request goes (a template, at most 2,000 characters): a path"
        " under the dependency's base URL, or a full URL. Values filled in are"
        " percent-encoded.",
        examples=["/slots?day={{day}}", "https://api.example.com/v1/orders"],
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers; their values are templates.",
        examples=[{"Accept": "application/json", "X-Order": "{{order.id}}"}],
    )
    body: Any = Field(
        default=None,
        description="The JSON body sent (every string inside is a template); none when left out.",
        examples=[{"slot": "{{slot}}", "name": "{{name}}"}],
    )
    save_as: VariableName | None = Field(
        default=None,
        description="Where the JSON reply is saved: a variable path.",
        examples=["booking"],
    )
    wait_for_dependency: WaitForDependency | None = Field(
        default=None,
        description="While the dependency is unavailable (its circuit breaker open), wait"
        " for it durably, up to `maxWaitSeconds`, instead of failing at once. Needs a"
        " `dependency`.",
        examples=[{"maxWaitSeconds": 600}],
    )
    #: a ``POST`` or ``PATCH`` whose answer was lost (a timeout, a connection cut after
    #: the request went out) is sent again although its dependency does not declare
    #: ``idempotent = true``: the author knows a repeat does no harm
    retry_unsafe: bool = Field(
        default=False,
        description="`POST` and `PATCH` only: send the request again when its answer was"
        " lost after it went out (a timeout, a cut connection) although its dependency is"
        " not declared idempotent. Set it when a repeat does no harm; default false.",
        examples=[True, False],
    )

    _check_wait = field_validator("wait_for_dependency")(_wait_needs_dependency)

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield "url", self.url, False
        for name, value in self.headers.items():
            yield f"headers.{name}", value, False
        yield from _value_templates("body", self.body)

    @field_validator("retry_unsafe")
    @classmethod
    def _unsafe_method(cls, value: bool, info: ValidationInfo) -> bool:
        method = info.data.get("method")
        if value and method not in ("POST", "PATCH"):
            raise ValueError(
                f"retryUnsafe is for POST and PATCH; a {method} is retried anyway"
                " (it is idempotent by HTTP semantics)"
            )
        return value


class Intent(WireModel):
    """One intent an ``ai`` node tells apart, with the keywords that mean it when the
    NLP service cannot answer (a trailing ``*`` matches any word ending)."""

    model_config = described(
        "One intent an `ai` node tells apart, with the keywords that mean it when the NLP"
        " service cannot answer.",
        {"name": "billing", "keywords": ["boleto", "segunda via", "invoice*"], "next": "billing"},
        {"name": "cancel", "keywords": ["cancel*"]},
        title="Intent",
    )

    name: str = Field(
        min_length=1,
        max_length=100,
        description="The intent's name, as the NLP service answers it: unique in the node, at"
        " most 100 characters.",
        examples=["billing", "cancel"],
    )
    keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=500,
        description="Words or phrases that mean this intent, matched ignoring case and"
        " accents; a trailing `*` matches any ending (`cancel*` matches `cancelamento`). At"
        " most 500, each at most 200 characters.",
        examples=[["boleto", "segunda via", "invoice*"]],
    )
    next: NodeId | None = Field(
        default=None,
        description="Where to go when this intent is matched; the node's `next` when left out.",
        examples=["billing"],
    )

    @field_validator("keywords")
    @classmethod
    def _keywords_have_words(cls, value: list[str]) -> list[str]:
        for keyword in value:
            if not any(c.isalnum() for c in keyword):
                raise ValueError(f"keyword {keyword!r} has no letters or digits")
        return value


class AiNode(NodeBase):
    """Classify the contact's text into one of ``intents`` through the NLP
    ``dependency``, with the intents' keywords as the fallback (see
    :mod:`trilha.processors.ai`)."""

    target_fields = ("next", "default")

    model_config = described(
        "Sorts the contact's text into one of `intents` through the NLP `dependency`, each"
        " intent's keywords deciding when the service cannot answer. Goes to the matched"
        " intent's `next` (else the node's `next`), or to `default` when none matched.",
        {
            "id": "triage",
            "type": "ai",
            "dependency": "nlp",
            "text": "{{problem}}",
            "intents": [
                {"name": "billing", "keywords": ["boleto", "invoice*"], "next": "billing"},
                {"name": "cancel", "keywords": ["cancel*"]},
            ],
            "minConfidence": 0.6,
            "saveAs": "intent",
            "default": "human",
            "next": "support",
        },
        title="Intent classification",
    )

    type: Literal["ai"] = _node_type("ai")
    #: the NLP service; without one only the keywords are used
    dependency: str | None = Field(
        default=None,
        max_length=200,
        description="The NLP service, a dependency declared in trilha.toml; without one only"
        " the intents' keywords are used.",
        examples=["nlp"],
    )
    #: path on the dependency (a template) receiving ``POST {text, intents}``
    url: str = Field(
        default="/classify",
        min_length=1,
        max_length=2_000,
        description="The path on the dependency that classifies (a template; default"
        ' `/classify`): it gets `POST {"text", "intents"}` and answers'
        ' `{"intent", "confidence"}`.',
        examples=["/classify", "/v2/intents"],
    )
    #: what to classify, a template such as ``"{{problem}}"``
    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT,
        description="What to classify, a template such as `{{problem}}`: at most 4,096 characters.",
        examples=["{{problem}}"],
    )
    intents: list[Intent] = Field(
        min_length=1,
        max_length=100,
        description="The intents told apart: 1 to 100, each name once.",
        examples=[[{"name": "billing", "keywords": ["boleto"]}, {"name": "cancel"}]],
    )
    #: receives ``{intent, source: "nlp"|"keywords", confidence}``
    save_as: VariableName = Field(
        default="intent",
        description="Where the result goes (default `intent`): `{intent, source,"
        " confidence}`, `source` being `nlp` or `keywords`.",
        examples=["intent", "triage.result"],
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Below this confidence (0 to 1; default 0.5) the NLP's answer is no"
        " match, and the keywords decide.",
        examples=[0.6],
    )
    #: where to go when no intent matched (else ``next``)
    default: NodeId | None = Field(
        default=None,
        description="Where to go when no intent matched; the node's `next` when left out.",
        examples=["human"],
    )
    wait_for_dependency: WaitForDependency | None = Field(
        default=None,
        description="While the NLP service is unavailable (its circuit breaker open), wait"
        " for it durably, up to `maxWaitSeconds`, instead of using the keywords at once."
        " Needs a `dependency`.",
        examples=[{"maxWaitSeconds": 600}],
    )

    _check_wait = field_validator("wait_for_dependency")(_wait_needs_dependency)

    @field_validator("intents")
    @classmethod
    def _unique_names(cls, value: list[Intent]) -> list[Intent]:
        seen: set[str] = set()
        for intent in value:
            if intent.name in seen:
                raise ValueError(f"intent '{intent.name}' is declared twice")
            seen.add(intent.name)
        return value

    @field_validator("save_as")
    @classmethod
    def _save_as_is_a_path(cls, value: str) -> str:
        if not is_valid_path(value):
            raise ValueError(f"'{value}' is not a valid variable path")
        return value

    def templates(self) -> Iterator[tuple[str, str, bool]]:
        yield "text", self.text, False
        yield "url", self.url, False

    def targets(self) -> Iterator[tuple[str, str]]:
        yield from super().targets()
        for i, intent in enumerate(self.intents):
            if intent.next is not None:
                yield f"intents[{i}].next", intent.next


BUILTIN_NODE_TYPES: dict[str, type[NodeBase]] = {
    "message": MessageNode,
    "question": QuestionNode,
    "condition": ConditionNode,
    "set": SetNode,
    "delay": DelayNode,
    "wait_until_open": WaitUntilOpenNode,
    "jump": JumpNode,
    "subflow": SubflowNode,
    "wait_event": WaitEventNode,
    "handoff": HandoffNode,
    "end": EndNode,
    "http": HttpNode,
    "ai": AiNode,
}


# ----------------------------------------------------------------------------- flow


class Flow(WireModel):
    """A validated flow. Nodes are typed per their ``type`` (see :func:`parse_flow`)."""

    model_config = described(
        "A trilha flow: a conversation as a graph of nodes, run from `start`. `trilha"
        " validate` checks it, reporting every problem with its path (such as"
        " `nodes[3].next`), including those this schema cannot express; `trilha run` or"
        " `PUT /v1/flows/{id}` publishes it.",
        {
            "$schema": "../docs/schema/flow.schema.json",
            "id": "hello",
            "name": "Hello",
            "start": "ask_name",
            "nodes": [
                {
                    "id": "ask_name",
                    "type": "question",
                    "text": "Your name?",
                    "variable": "name",
                    "next": "bye",
                },
                {"id": "bye", "type": "end", "text": "Nice to meet you, {{name}}!"},
            ],
        },
        title="trilha flow",
    )

    #: editors read it (completion, hover help); trilha ignores it and never stores it
    schema_: str | None = Field(
        default=None,
        alias="$schema",
        title="$schema",
        max_length=2_000,
        exclude=True,
        description="The JSON Schema this file follows, for editors (completion and hover"
        " help): its URL, or a path relative to the file. Ignored by trilha.",
        examples=["../docs/schema/flow.schema.json", "./flow.schema.json"],
    )
    #: a flow published through the API by an institution is stored as "INSTITUTION/ID"
    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_REFERENCE_PATTERN,
        description="The flow's name: letters, digits and `_ . -`, at most 200 characters;"
        " what `jump` and `subflow` nodes name. A flow an institution publishes is stored"
        " as `INSTITUTION/NAME`.",
        examples=["clinic", "checkout"],
    )
    version: int = Field(
        default=1,
        ge=1,
        description="The version to publish as (1 or more; default 1). A changed definition"
        " is stored as this version or the one after the latest, whichever is higher; an"
        " unchanged one keeps its version. Executions keep the version they started on.",
        examples=[1, 2],
    )
    name: str | None = Field(
        default=None,
        max_length=200,
        description="A name for people, shown in the debugger and in listings: at most 200"
        " characters.",
        examples=["Clinic scheduling"],
    )
    description: str | None = Field(
        default=None,
        max_length=4_000,
        description="What the flow is for, for the people who keep it: at most 4,000"
        " characters. Never said to the contact.",
        examples=["Books an appointment at the clinic and confirms it."],
    )
    start: NodeId = Field(
        description="The `id` of the node every execution starts at.", examples=["welcome"]
    )
    settings: FlowSettings = Field(
        default_factory=FlowSettings,
        description="Timeouts, retries and recovery for the whole flow; each has a default.",
        examples=[{"inputTimeoutSeconds": 3600, "timeoutMessage": "We did not hear back."}],
    )
    default_language: LanguageTag | None = Field(
        default=None,
        description="The language of texts written as a map of languages when the"
        " contact's (`sys.language`) has none: a language tag such as `pt-BR` or `en`.",
        examples=["pt-BR", "en"],
    )
    on_missing_node: NodeId | None = Field(
        default=None,
        description="Where to go when the execution's current node does not exist (a jump"
        " to a node that is gone), when the node before it has no `fallback`.",
        examples=["menu"],
    )
    interrupts: list[Interrupt] = Field(
        default_factory=list,
        max_length=MAX_INTERRUPTS,
        description="Keywords that work anywhere in the flow: a reply holding one goes to"
        " its `goTo` node instead of to the question waiting for it. At most 50.",
        examples=[[{"keywords": ["atendente", "human"], "goTo": "human"}]],
    )
    nodes: list[Any] = Field(
        min_length=1,
        max_length=MAX_NODES,
        description="The flow's steps: 1 to 5,000 nodes, each with an `id` unique in the"
        " flow and a `type` that decides its other properties.",
        examples=[
            [
                {"id": "hello", "type": "message", "text": "Hi!", "next": "bye"},
                {"id": "bye", "type": "end"},
            ]
        ],
    )

    @model_validator(mode="before")
    @classmethod
    def _schema_only_by_its_name(cls, data: Any) -> Any:
        """``$schema`` is the key; its Python name is not a key of the format (models
        accept field names too, which would let ``schema_`` through unnoticed)."""
        if isinstance(data, dict) and "schema_" in data:
            raise PydanticCustomError(
                "unknown_field", "schema_: unknown field (did you mean $schema?)"
            )
        return data

    @field_validator("schema_")
    @classmethod
    def _schema_is_for_editors(cls, value: str | None) -> None:
        """Checked as a string, then dropped: two flows that differ only in the schema
        their files name are the same flow (one version, equal models)."""

    def node(self, node_id: str) -> NodeBase | None:
        return self._index().get(node_id)

    def interrupt_for(self, text: str) -> KeywordHit[Interrupt] | None:
        """The interrupt a contact's ``text`` holds a keyword of, if any."""
        if not self.interrupts:
            return None
        index: KeywordIndex[Interrupt] | None = self.__dict__.get("_interrupt_index")
        if index is None:
            index = KeywordIndex((k, i) for i in self.interrupts for k in i.keywords)
            self.__dict__["_interrupt_index"] = index
        return index.match(text)

    def _index(self) -> dict[str, NodeBase]:
        index: dict[str, NodeBase] | None = self.__dict__.get("_node_index")
        if index is None:
            index = {n.id: n for n in self.nodes}
            self.__dict__["_node_index"] = index
        return index

    def wire(self) -> dict[str, Any]:
        """The flow as wire JSON (camelCase, defaults omitted)."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        data["version"] = self.version
        data["nodes"] = [
            n.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) | {"type": n.type}
            for n in self.nodes
        ]
        return data


@dataclass(slots=True)
class NodeTypes:
    """The table of node models, built-ins plus those of registered plugins."""

    models: dict[str, type[NodeBase]] = field(default_factory=lambda: dict(BUILTIN_NODE_TYPES))

    def register(self, type_name: str, model: type[NodeBase]) -> None:
        self.models[type_name] = model


def parse_flow(
    data: Any, node_types: NodeTypes | None = None, *, source_bytes: int | None = None
) -> tuple[Flow | None, list[Problem]]:
    """Parse and check a flow, returning it (``None`` on errors) and every problem found."""
    types = node_types or NodeTypes()
    if source_bytes is not None and source_bytes > MAX_FLOW_BYTES:
        return None, [
            Problem("", f"flow is {source_bytes} bytes; the limit is {MAX_FLOW_BYTES} (1 MiB)")
        ]
    if not isinstance(data, Mapping):
        return None, [Problem("", "a flow must be a JSON object")]
    problems: list[Problem] = []
    raw_nodes = data.get("nodes")
    if isinstance(raw_nodes, list) and len(raw_nodes) > MAX_NODES:
        return None, [
            Problem("nodes", f"flow has {len(raw_nodes)} nodes; the limit is {MAX_NODES}")
        ]
    if "start" not in data:
        problems.append(Problem("start", "missing: a flow must name its start node"))
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, skip_nodes=True))
        flow = None
    nodes: list[NodeBase] = []
    if isinstance(raw_nodes, list):
        for i, raw in enumerate(raw_nodes):
            node = _parse_node(i, raw, types, problems)
            if node is not None:
                nodes.append(node)
    if problems and any(p.severity == "error" for p in problems):
        if flow is not None or nodes:
            problems.extend(_graph_problems(data.get("start"), data, nodes, raw_nodes))
        return None, _dedupe(problems)
    assert flow is not None
    flow = flow.model_copy(update={"nodes": nodes})
    problems.extend(_graph_problems(flow.start, data, nodes, raw_nodes))
    if any(p.severity == "error" for p in problems):
        return None, _dedupe(problems)
    return flow, _dedupe(problems)


def load_flow(data: Any, node_types: NodeTypes | None = None) -> Flow:
    """Parse a flow or raise :class:`FlowValidationError` with every problem."""
    flow, problems = parse_flow(data, node_types)
    if flow is None:
        raise FlowValidationError([p for p in problems if p.severity == "error"])
    return flow


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _parse_node(index: int, raw: Any, types: NodeTypes, problems: list[Problem]) -> NodeBase | None:
    where = f"nodes[{index}]"
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "a node must be a JSON object"))
        return None
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        problems.append(Problem(f"{where}.type", "missing: every node needs a type"))
        return None
    model = types.models.get(type_name)
    if model is None:
        known = ", ".join(sorted(types.models))
        problems.append(
            Problem(f"{where}.type", f"unknown node type '{type_name}' (known: {known})")
        )
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = format_loc(tuple(err["loc"]))
            problems.append(Problem(f"{where}.{loc}" if loc else where, _message(err)))
        return None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return "missing: this field is required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return msg.removeprefix("Value error, ")


def _pydantic_problems(exc: ValidationError, *, skip_nodes: bool) -> Iterator[Problem]:
    for err in exc.errors():
        loc = tuple(err["loc"])
        if skip_nodes and loc and loc[0] == "nodes" and len(loc) > 1:
            continue
        if loc == ("start",) and err["type"] == "missing":
            continue  # reported once, with a clearer message, by parse_flow
        yield Problem(format_loc(loc), _message(err))


def _graph_problems(
    start: Any, data: Mapping[str, Any], nodes: list[NodeBase], raw_nodes: Any
) -> Iterator[Problem]:
    flow_id = data.get("id", "?")
    positions: dict[str, int] = {}
    raw_ids: list[Any] = (
        [n.get("id") if isinstance(n, Mapping) else None for n in raw_nodes]
        if isinstance(raw_nodes, list)
        else []
    )
    for i, node_id in enumerate(raw_ids):
        if not isinstance(node_id, str):
            continue
        if node_id in positions:
            yield Problem(
                f"nodes[{i}].id",
                f"duplicate node id '{node_id}' (first at nodes[{positions[node_id]}])",
            )
        else:
            positions[node_id] = i
    known = set(positions)
    if isinstance(start, str) and start not in known:
        yield Problem("start", f"no node '{start}' in flow '{flow_id}'")
    on_missing = data.get("onMissingNode")
    if isinstance(on_missing, str) and on_missing not in known:
        yield Problem("onMissingNode", f"no node '{on_missing}' in flow '{flow_id}'")
    interrupt_targets = list(_interrupt_targets(data))
    for path, target in interrupt_targets:
        if target not in known:
            yield Problem(path, f"no node '{target}' in flow '{flow_id}'")
    yield from _interrupt_problems(data)
    if isinstance(flow_id, str):
        yield from _reference_problems(flow_id, data, nodes, positions)
    edges: dict[str, list[str]] = {}
    for node in nodes:
        i = positions.get(node.id, 0)
        out = edges.setdefault(node.id, [])
        for rel, target in node.targets():
            out.append(target)
            if target not in known:
                yield Problem(f"nodes[{i}].{rel}", f"no node '{target}' in flow '{flow_id}'")
        for rel, source in node.expressions():
            try:
                compile_expression(source)
            except ExpressionError as exc:
                yield Problem(f"nodes[{i}].{rel}", f"bad expression: {exc}")
        if isinstance(node, QuestionNode):
            yield from _question_problems(i, node)
            yield from _reminder_problems(i, node, _flow_input_timeout(data))
        if isinstance(node, SubflowNode):
            yield from _subflow_problems(i, node, flow_id)
        if isinstance(node, HandoffNode):
            yield from _handoff_problems(i, node)
        if isinstance(node, ContentFields):
            yield from _said_problems(i, node)
        for rel, name in variables_written(node):
            if read_only(name):
                yield Problem(f"nodes[{i}].{rel}", READ_ONLY)
        if isinstance(node, SetNode):
            for name in [*node.variables, *node.expressions_]:
                if not is_valid_path(name):
                    yield Problem(f"nodes[{i}].variables.{name}", "not a valid variable path")
        if (
            not node.terminal
            and node.next is None
            and getattr(node, "default", None) is None
            and not (isinstance(node, SubflowNode) and "completed" in node.branches)
        ):
            yield Problem(
                f"nodes[{i}].next",
                "no next node; the execution completes after this node",
                "warning",
            )
    yield from _language_problems(nodes, positions)
    yield from _template_problems(nodes, positions)
    if isinstance(start, str) and start in known and len(nodes) == len(known):
        entries = [on_missing] if isinstance(on_missing, str) else []
        reachable = _reachable(start, edges, entries + [t for _, t in interrupt_targets])
        for node in nodes:
            if node.id not in reachable:
                yield Problem(
                    f"nodes[{positions[node.id]}]",
                    f"node '{node.id}' is unreachable from start '{start}'",
                    "warning",
                )


def _reference_problems(
    flow_id: str, data: Mapping[str, Any], nodes: list[NodeBase], positions: dict[str, int]
) -> Iterator[Problem]:
    """Every other flow this one names must be its owner's or shared (DESIGN §9)."""
    settings = data.get("settings")
    fallback = settings.get("fallback") if isinstance(settings, Mapping) else None
    target = fallback.get("fallbackFlowId") if isinstance(fallback, Mapping) else None
    if isinstance(target, str):
        reason = reference_denial(flow_id, target)
        if reason is not None:
            yield Problem("settings.fallback.fallbackFlowId", reason)
    for node in nodes:
        for rel, reference in node.flow_references():
            reason = reference_denial(flow_id, reference)
            if reason is not None:
                yield Problem(f"nodes[{positions.get(node.id, 0)}].{rel}", reason)


def dependencies_used(flow: Flow) -> Iterator[tuple[str, str]]:
    """``(node id, dependency name)`` for every node that calls a declared dependency."""
    for node in flow.nodes:
        name = getattr(node, "dependency", None)
        if isinstance(name, str):
            yield node.id, name


@dataclass(frozen=True, slots=True)
class CalendarUse:
    """The calendars a flow reads (:func:`calendars_used`)."""

    names: frozenset[str] = frozenset()
    #: a name computed while the flow runs (``is_open(office)``): any of them
    dynamic: bool = False

    def __bool__(self) -> bool:
        return self.dynamic or bool(self.names)


def node_calendars(node: NodeBase) -> Iterator[tuple[str, str | None]]:
    """``(wire path, calendar)`` for every calendar ``node`` names: a ``wait_until_open``'s,
    and the first argument of each ``is_open``/``next_open`` in its expressions and
    templates (``None`` where the name is computed while the flow runs)."""
    named = getattr(node, "calendar", None)
    if isinstance(named, str):
        yield "calendar", named
    for path, source in node.expressions():
        try:
            expression = compile_expression(source)
        except ExpressionError:
            continue  # refused at publish; nothing to read here
        for name in calendar_names(expression):
            yield path, name
    for path, template, _ in node.templates():
        if "(" not in template:  # no call, no calendar: most texts end here
            continue
        for expression in template_expressions(template):
            for name in calendar_names(expression):
                yield path, name


def calendars_used(flow: Flow) -> CalendarUse:
    """The calendars ``flow``'s nodes name (:func:`node_calendars`), so the engine reads
    an institution's calendars only for the flows that need them. Worked out once per
    flow version (the engine keeps the flow)."""
    cached: CalendarUse | None = flow.__dict__.get("_calendar_use")
    if cached is not None:
        return cached
    named = [name for node in flow.nodes for _, name in node_calendars(node)]
    use = CalendarUse(frozenset(name for name in named if name is not None), None in named)
    flow.__dict__["_calendar_use"] = use
    return use


def _question_problems(i: int, node: QuestionNode) -> Iterator[Problem]:
    rule = node.validate_
    if not is_valid_path(node.variable):
        yield Problem(f"nodes[{i}].variable", f"'{node.variable}' is not a valid variable path")
    if rule.kind == "regex" and not rule.pattern:
        yield Problem(f"nodes[{i}].validate.pattern", "missing: kind 'regex' needs a pattern")
    offers = node.buttons is not None or node.list_ is not None
    if rule.kind == "choice" and not rule.options and not offers:
        yield Problem(
            f"nodes[{i}].validate.options",
            "missing: kind 'choice' needs options (or the question's buttons or list)",
        )
    if rule.accept and rule.kind != "media":
        yield Problem(f"nodes[{i}].validate.accept", "accept is for kind 'media'")


def _flow_input_timeout(data: Mapping[str, Any]) -> float:
    """The flow's ``settings.inputTimeoutSeconds`` as written (its default when it is not
    a number: that is reported as the setting's own problem)."""
    settings = data.get("settings")
    value = settings.get("inputTimeoutSeconds") if isinstance(settings, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    default: float = FlowSettings.model_fields["input_timeout_seconds"].default
    return default


def _reminder_problems(i: int, node: QuestionNode, flow_timeout: float) -> Iterator[Problem]:
    """Reminders come one after another, all before the input timeout ends the wait,
    and each says something the channel can show."""
    timeout = node.input_timeout_seconds or flow_timeout
    whose = (
        "the question's inputTimeoutSeconds"
        if node.input_timeout_seconds
        else ("the flow's settings.inputTimeoutSeconds")
    )
    previous: float | None = None
    for j, reminder in enumerate(node.reminders):
        where = f"nodes[{i}].reminders[{j}]"
        after = reminder.after_seconds
        if previous is not None and after <= previous:
            yield Problem(
                f"{where}.afterSeconds",
                f"{after:g} s is not after the reminder before it ({previous:g} s): reminders"
                " come in order",
            )
        if after >= timeout:
            yield Problem(
                f"{where}.afterSeconds",
                f"{after:g} s is not before {whose} ({timeout:g} s): the wait ends first",
            )
        previous = after
        for rel, message in content_problems(reminder, reminder.text):
            yield Problem(f"{where}.{rel}", message)
        if reminder.text is None and not reminder.rich():
            yield Problem(f"{where}.text", "missing: a reminder needs a text, media or a location")
        for rel, value in localized_texts(reminder, reminder.text):
            if isinstance(value, dict) and not any(t.strip() for t in value.values()):
                yield Problem(f"{where}.{rel}", "every language's text is empty")


def _subflow_problems(i: int, node: SubflowNode, flow_id: Any) -> Iterator[Problem]:
    """Variable paths a call reads and writes, and a flow that calls itself (a cycle:
    each call nests one frame deeper until ``[engine] max_call_depth`` fails it)."""
    for name in node.input:
        if not is_valid_path(name) or read_only(name):
            yield Problem(f"nodes[{i}].input.{name}", "not a valid variable path")
    for caller, callee in node.output.items():
        if not is_valid_path(caller):
            yield Problem(f"nodes[{i}].output.{caller}", "not a valid variable path")
        if not is_valid_path(callee):
            yield Problem(f"nodes[{i}].output.{caller}", f"'{callee}' is not a valid variable path")
    if isinstance(flow_id, str) and split_id(node.flow_id)[1] == split_id(flow_id)[1]:
        yield Problem(
            f"nodes[{i}].flowId",
            f"flow '{split_id(flow_id)[1]}' calls itself: a cycle; each call nests one"
            " sub-flow deeper, and a call past [engine] max_call_depth fails the node",
            "warning",
        )


def _handoff_problems(i: int, node: HandoffNode) -> Iterator[Problem]:
    """A ``wait`` handoff must know where the bot takes the conversation back."""
    if node.mode == "end":
        for name in ("return_after_seconds", "on_return_timeout"):
            if getattr(node, name) is not None:
                yield Problem(f"nodes[{i}].{to_wire(name)}", "only for mode 'wait'")
        return
    if node.return_after_seconds is not None and node.on_return_timeout is None and not node.next:
        yield Problem(
            f"nodes[{i}].returnAfterSeconds",
            "needs onReturnTimeout or next: the node the bot takes the conversation back at",
        )
    elif node.on_return_timeout is not None and node.return_after_seconds is None:
        yield Problem(
            f"nodes[{i}].onReturnTimeout", "needs returnAfterSeconds: when to take it back"
        )
    if node.next is None:
        yield Problem(
            f"nodes[{i}].next",
            "a 'wait' handoff with no next: every handback must name the node (nodeId)",
            "warning",
        )


def _said_problems(i: int, node: ContentFields) -> Iterator[Problem]:
    """WhatsApp's limits on what the node says, and a message that says nothing."""
    text = getattr(node, "text", None)
    for rel, message in content_problems(node, text):
        yield Problem(f"nodes[{i}].{rel}", message)
    # buttons and lists without a text have content_problems' own message
    if isinstance(node, MessageNode) and text is None and not node.rich():
        yield Problem(f"nodes[{i}].text", "missing: a message needs a text, media or a location")
    for rel, value in localized_texts(node, text):
        if isinstance(value, dict) and not any(t.strip() for t in value.values()):
            yield Problem(f"nodes[{i}].{rel}", "every language's text is empty")


def variables_written(node: NodeBase) -> Iterator[tuple[str, str]]:
    """``(wire path, variable)`` for every variable the node assigns."""
    if isinstance(node, QuestionNode):
        yield "variable", node.variable
    if isinstance(node, SetNode):
        for name in node.variables:
            yield f"variables.{name}", name
        for name in node.expressions_:
            yield f"expressions.{name}", name
    save_as = getattr(node, "save_as", None)
    if isinstance(save_as, str):
        yield "saveAs", save_as
    if isinstance(node, SubflowNode):
        for name in node.output:
            yield f"output.{name}", name


#: variables a flow reads without setting them: trilha's own, and the contact's (the
#: platform passes ``contact`` at the start; ``contact.language`` is kept by trilha)
_GIVEN: Final = frozenset({"sys", "contact"})


def node_reads(node: NodeBase) -> Iterator[tuple[str, str]]:
    """``(wire path, variable path)`` for every variable ``node``'s templates and then its
    expressions read, in order: what validation warns about when no node sets it, and
    what moving executions to a new version checks they hold. An expression that does
    not parse reads nothing here (it is refused where expressions are checked)."""
    for path, template, in_loop in node.templates():
        if "{{" in template:
            for read in template_paths(template, in_loop=in_loop):
                yield path, read
    for path, source in node.expressions():
        try:
            expression = compile_expression(source)
        except ExpressionError:
            continue
        for read in expression.ordered_paths():
            yield path, read


def _template_problems(nodes: list[NodeBase], positions: dict[str, int]) -> Iterator[Problem]:
    """Every template lints (an unclosed ``{{``, a block left open, an expression that
    does not parse or calls an unknown function: errors), and a template or an
    expression (a condition's ``when``, a ``set``) reading a variable no node sets is
    flagged (a warning: it may be a start variable, or a typo that would quietly take
    a condition's ``default``)."""
    written = {name for node in nodes for _, name in variables_written(node)}
    roots = {name.split(".", 1)[0] for name in written} | _GIVEN
    warned: set[str] = set()
    for node in nodes:
        i = positions.get(node.id, 0)
        for path, template, in_loop in node.templates():
            if "{{" in template:
                for issue in lint_template(template, in_loop=in_loop):
                    yield Problem(f"nodes[{i}].{path}", issue.message, issue.severity)
        for path, read in node_reads(node):
            root = read.split(".", 1)[0]
            if root in roots or root in warned:
                continue
            warned.add(root)
            yield Problem(
                f"nodes[{i}].{path}",
                f"reads '{root}', which no node of the flow sets (a variable given at the start?)",
                "warning",
            )


def _language_problems(nodes: list[NodeBase], positions: dict[str, int]) -> Iterator[Problem]:
    """A text written in some of the flow's languages but not all of them: a contact
    speaking the missing one reads the default language there (a warning)."""
    texts: list[tuple[str, dict[str, str]]] = []
    for node in nodes:
        if not isinstance(node, ContentFields):
            continue
        i = positions.get(node.id, 0)
        pairs = list(localized_texts(node, getattr(node, "text", None)))
        if isinstance(node, QuestionNode) and node.invalid_text is not None:
            pairs.append(("invalidText", node.invalid_text))
        for j, reminder in enumerate(node.reminders if isinstance(node, QuestionNode) else ()):
            pairs.extend(
                (f"reminders[{j}].{rel}", v) for rel, v in localized_texts(reminder, reminder.text)
            )
        texts.extend((f"nodes[{i}].{rel}", v) for rel, v in pairs if isinstance(v, dict))
    languages = sorted({tag for _, value in texts for tag in value})
    for where, value in texts:
        missing = [tag for tag in languages if tag not in value]
        if missing:
            yield Problem(
                where,
                f"no text in {', '.join(missing)} (other texts of the flow have one)",
                "warning",
            )


def _interrupt_targets(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(wire path, node id)`` of each interrupt's ``goTo``, read from the raw flow so a
    flow with other errors still has its targets checked."""
    interrupts = data.get("interrupts")
    for i, interrupt in enumerate(interrupts if isinstance(interrupts, list) else ()):
        target = interrupt.get("goTo") if isinstance(interrupt, Mapping) else None
        if isinstance(target, str):
            yield f"interrupts[{i}].goTo", target


def _interrupt_problems(data: Mapping[str, Any]) -> Iterator[Problem]:
    """A keyword in two interrupts: which node a reply holding it goes to is ambiguous."""
    interrupts = data.get("interrupts")
    groups = [
        [k for k in interrupt.get("keywords", ()) if isinstance(k, str)]
        if isinstance(interrupt, Mapping) and isinstance(interrupt.get("keywords"), list)
        else []
        for interrupt in (interrupts if isinstance(interrupts, list) else ())
    ]
    for first, again, keyword in repeated_keywords(groups):
        yield Problem(
            f"interrupts[{again[0]}].keywords[{again[1]}]",
            f"keyword {keyword!r} is also in interrupts[{first[0]}].keywords[{first[1]}]:"
            " a keyword may take the contact to one node only",
        )


def _reachable(start: str, edges: dict[str, list[str]], extra: list[str]) -> set[str]:
    """The nodes reachable from ``start`` or from ``extra`` (entries other than the
    start: ``onMissingNode``, the interrupts' ``goTo``)."""
    seen: set[str] = set()
    stack = [start, *extra]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        stack.extend(edges.get(node_id, ()))
    return seen


def flow_json_schema(node_types: NodeTypes | None = None) -> dict[str, Any]:
    """The JSON Schema of a flow with every registered node type, for editors and CI."""
    types = node_types or NodeTypes()
    models = tuple(types.models.values())
    node_union: Any = Annotated[
        models[0] if len(models) == 1 else _union(models), Field(discriminator="type")
    ]
    nodes = Flow.model_fields["nodes"]
    schema_model = create_model(
        "Flow",
        __base__=Flow,
        nodes=(
            list[node_union],
            Field(
                min_length=1,
                max_length=MAX_NODES,
                description=nodes.description,
                examples=nodes.examples,
            ),
        ),
    )
    body: dict[str, Any] = TypeAdapter(schema_model).json_schema(
        by_alias=True, schema_generator=_AsWritten
    )
    # the ids first: what an editor or a reader looks for at the top
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": FLOW_SCHEMA_ID,
        "title": "trilha flow",
    }
    schema.update((k, v) for k, v in body.items() if k not in schema)
    return schema


class _AsWritten(GenerateJsonSchema):
    """Pydantic's schema with its keys sorted, except inside ``examples`` (and, as
    pydantic does, ``properties`` and ``default``): an example reads as its author wrote
    it, ``id`` and ``type`` first, when an editor shows or inserts it."""

    def sort(self, value: JsonSchemaValue, parent_key: str | None = None) -> JsonSchemaValue:
        ordered: JsonSchemaValue = _sorted(value, parent_key)
        return ordered


def _sorted(value: Any, parent_key: str | None) -> Any:
    if parent_key == "examples":
        return value
    if isinstance(value, dict):
        keys = value if parent_key in ("properties", "default") else sorted(value)
        return {key: _sorted(value[key], key) for key in keys}
    if isinstance(value, list):
        return [_sorted(item, parent_key) for item in value]
    return value


def _union(models: tuple[type[NodeBase], ...]) -> Any:
    from typing import Union

    return Union[models]  # noqa: UP007 - a runtime tuple of classes needs Union[]
