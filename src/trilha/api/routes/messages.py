"""Inbound messages: the contact's replies, delivered by the platform.

``POST /v1/conversations/{conversationId}/messages`` stores the message durably
(:meth:`~trilha.store.base.Store.deliver_inbound`) before it answers 202, and the
store wakes the conversation's active execution: a worker applies its messages in
the order they were received. A repeated ``messageId`` in the conversation is
acknowledged (202, ``"duplicate": true``) and ignored, whenever it comes: also after
the execution it went to has ended, so a platform's retry never turns into an error.

A message for a conversation with **no active execution** starts the flow of the
institution's trigger it matches (:mod:`trilha.core.triggers`, set with ``PUT
/v1/triggers`` or ``[[triggers]]``): the message is stored with the new execution, in
one transaction, as its ``sys.trigger`` (it is not the answer to the flow's first
question), and the answer is 202 with ``"started": true``, the ``executionId`` and the
``trigger`` matched. A repeated ``messageId`` finds the message stored and starts
nothing (202, ``"duplicate": true``), also when two deliveries of it arrive at once;
two different messages at once start one execution, and the other is its first reply.
A trigger with ``interrupt`` also starts its flow while another execution runs (not a
paused one: an operator or a person holds it), replacing it: the old one is cancelled,
its trail saying by what.

A message no trigger matches, for a conversation with no active execution, answers 404
(``urn:trilha:problem:no_active_execution``) and is **not stored**. What a platform
does then is its own choice (start a flow for it with ``POST /v1/executions`` and send
the message again, or route the contact to a person); storing the message would only
keep a reply that nothing will ever read, and its ``messageId`` would then count as a
duplicate when sent again after the start, so that second delivery would be ignored.
The conversation's executions are looked up first, and the message is attached to
the active one in the store's transaction: one that ends meanwhile refuses it
(nothing stored, 404), never silently drops it.

Back-pressure never applies to replies, which keep conversations already running
moving; a trigger's start is a start, refused with 503 like ``POST /v1/executions``
while the queue is over its bound (nothing stored: the platform sends it again).

A message has a ``type`` (default ``text``): ``button`` and ``list`` replies carry the
``replyId`` tapped, ``media`` a file by link, ``location`` a place
(:mod:`trilha.inbound` checks each). The store keeps the structured form as the
message's ``content`` and a plain rendering as its ``text``, so readers of text alone
see the title tapped, the caption or ``[image]``, the place's name or coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Writer
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import Problem, problems
from trilha.api.routes.executions import (
    EXTERNAL_ID_PATTERN,
    ExternalId,
    actor_of,
    institution_for,
    refuse_when_overloaded_app,
)
from trilha.api.routes.flows import resolve
from trilha.api.routes.triggers import trigger_book_of
from trilha.api.wire import JsonObject
from trilha.core.execution import Execution, InboundMessage, iso
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.keywords import matchable_text
from trilha.core.states import ExecutionStatus
from trilha.core.triggers import TriggerMatch
from trilha.core.wire import WireModel
from trilha.errors import ConversationBusy, CorruptedRecord, ExecutionEnded, ExecutionNotFound
from trilha.inbound import InboundContent, with_language
from trilha.observability.logging import get_logger
from trilha.store.base import InboundResult, Store

router = APIRouter(prefix="/v1/conversations", tags=["messages"])
log = get_logger("trilha.api")

#: how many times a delivery looks the conversation up again when it changed under it
#: (an execution ended, or another delivery started one) before it gives up with 409
MAX_LOOKUPS: Final = 8

ConversationIdPath = Annotated[
    str,
    Path(
        alias="conversationId",
        pattern=EXTERNAL_ID_PATTERN,
        max_length=200,
        description="The platform's conversation id.",
    ),
]


class InboundMessageIn(InboundContent):
    """A contact's message, as the platform received it: a text (``{"text": "oi"}``), a
    button or list reply, a photo or document, a location (:class:`InboundContent`)."""

    message_id: ExternalId = Field(description="The platform's id: repeats are ignored.")
    contact_id: ExternalId
    payload: JsonObject | None = Field(
        default=None, description="Anything else the channel carried (a button's value...)."
    )
    institution_id: str | None = Field(
        default=None,
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Default: the key's; admin keys must name one.",
    )


class TriggerMatchOut(WireModel):
    """The trigger a message started its execution by."""

    flow_id: str = Field(description="The trigger's flow, as it names it.")
    keyword: str | None = Field(description="The keyword matched; null: the default trigger.")
    default: bool
    interrupt: bool
    position: int = Field(description="The trigger's place in the institution's list.")
    replaced: str | None = Field(
        default=None, description="An interrupt: the execution it replaced (cancelled)."
    )


class MessageAccepted(WireModel):
    accepted: bool = Field(description="Always true: the message is stored.")
    duplicate: bool = Field(description="This messageId had been received already: ignored.")
    message_id: str
    conversation_id: str
    execution_id: str | None = Field(description="The execution the message goes to.")
    received_at: str | None = Field(description="When it was first received.")
    started: bool = Field(
        default=False,
        description="Present (true) only when the message started the execution (a trigger"
        " matched): it is that execution's `sys.trigger`, not a reply.",
    )
    trigger: TriggerMatchOut | None = Field(
        default=None, description="Present only when it started one: the trigger it matched."
    )


@router.post(
    "/{conversationId}/messages",
    summary="Deliver a contact's message to the conversation's active execution, or"
    " start the flow of the trigger it matches",
    status_code=202,
    responses={
        202: {
            "model": MessageAccepted,
            "description": "Stored (or a duplicate, ignored); `started`: a trigger started"
            " an execution for it.",
        },
        **problems(
            403,
            404,
            409,
            **{
                "404": "The conversation has no active execution and no trigger matches"
                " (nothing was stored), or it belongs to another institution.",
                "409": "The conversation kept changing under the delivery: send it again.",
                "503": "The store is unreachable, or (a trigger's start) the queue is over"
                " its bound; wait `Retry-After` seconds.",
            },
        ),
    },
)
async def deliver(
    request: Request,
    conversation_id: ConversationIdPath,
    principal: Writer,
    body: InboundMessageIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # the institution first (a foreign one is 404), then the key's kept answer: a key
    # never replays one institution's answer to another's caller
    institution = institution_for(principal, body.institution_id)

    async def run() -> JSONResponse:
        done = await deliver_message(
            request.app, institution, conversation_id, body, actor=actor_of(principal)
        )
        return _accepted(conversation_id, done)

    return await idempotent(request, principal, institution, idempotency_key, body, run)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What :func:`deliver_message` did with a message: stored for the active execution
    (or found stored already: ``result.status == "duplicate"``), or, with ``match``, the
    start of the trigger's flow it became (``replacing``: the execution it cancelled)."""

    result: InboundResult
    match: TriggerMatch | None = None
    replacing: Execution | None = None


async def deliver_message(
    app: Any,
    institution: str,
    conversation_id: str,
    body: InboundMessageIn,
    *,
    actor: str,
    contact: dict[str, Any] | None = None,
) -> Delivered:
    """Deliver a contact's message as this module's docstring says: to the
    conversation's active execution, else as the start of the trigger it matches
    (``contact``: what the channel knows of the contact, such as a WhatsApp profile's
    ``name``, set as ``contact.*`` in a start's variables).
    The one delivery both the API's route and the channels' webhooks go through
    (:mod:`trilha.api.whatsapp_webhooks`), so a message reaches a conversation the same
    way whichever door it came in by. :class:`Problem` 404 (``no_active_execution``:
    nothing stored), 409 (``conversation_busy``) or 503 (``overloaded``) otherwise."""
    state = state_of(app)
    store = state.runtime.store
    now = state.runtime.engine.clock.now()
    tried: set[str | None] = set()
    for _ in range(MAX_LOOKUPS):
        try:
            latest: Execution | None = await store.latest_execution(institution, conversation_id)
        except ExecutionNotFound:
            latest = None
        except CorruptedRecord:
            # the newest row fails its checks: still a live conversation; the store finds
            # the active row by its identity columns and the message wakes it, and the
            # engine restores it from its last checkpoint when it claims it
            result = await _store(store, institution, conversation_id, body, now, None)
            state.wake()
            return Delivered(result)
        target = latest.id if latest is not None else None
        if latest is not None and target not in tried:
            tried.add(target)
            if _interruptible(latest):
                started = await _triggered(
                    app, institution, conversation_id, body, now, latest, actor, contact
                )
                if started == "busy":
                    continue
                if started is not None:
                    return started
            try:
                result = await _store(store, institution, conversation_id, body, now, target)
            except (ExecutionEnded, ExecutionNotFound):
                # it ended (or went) since it was read: a newer execution may have started
                # meanwhile, so look once more before refusing
                continue
            state.wake()  # this process's workers apply it now, not at their next poll
            return Delivered(result)
        # nothing runs in the conversation (none ever did, or its latest ended)
        started = await _triggered(
            app, institution, conversation_id, body, now, None, actor, contact
        )
        if started == "busy":
            continue  # another delivery started one meanwhile: this message is its reply
        if started is not None:
            return started
        raise _no_active(conversation_id)
    raise Problem(
        409,
        f"conversation '{conversation_id}' kept changing while the message was delivered:"
        " nothing was stored, send it again",
        kind="conversation_busy",
    )


def _interruptible(execution: Execution) -> bool:
    """Whether an interrupting trigger may replace ``execution``: an active one that no
    operator or person holds (paused)."""
    return not execution.status.terminal and execution.status is not ExecutionStatus.PAUSED


async def _triggered(
    app: Any,
    institution: str,
    conversation_id: str,
    body: InboundMessageIn,
    now: float,
    replacing: Execution | None,
    actor: str,
    contact: dict[str, Any] | None = None,
) -> Delivered | Literal["busy"] | None:
    """Start the flow of the institution's trigger the message matches (with
    ``replacing``, an interrupting trigger's only), the message kept as its
    ``sys.trigger``: what was done, ``"busy"`` when another execution became active in
    the conversation meanwhile, or ``None`` when no trigger applies."""
    state = state_of(app)
    store = state.runtime.store
    triggers = (await trigger_book_of(app).effective(institution)).triggers
    if replacing is not None and not triggers.interrupts:
        return None  # the common case: a reply, with no interrupting trigger to look for
    text = matchable_text(body.plain_text(), body.content())
    match = triggers.match(text) if replacing is None else triggers.interrupt(text)
    if match is None:
        return None
    flow = await resolve(store, institution, match.trigger.flow_id)
    if flow is None:
        log.warning(
            "trigger.flow_missing",
            institutionId=institution,
            flowId=match.trigger.flow_id,
            keyword=match.keyword,
            conversationId=conversation_id,
        )
        if replacing is not None:
            return None  # the running execution takes it as a reply instead
        raise _no_active(
            conversation_id,
            f"; the trigger it matched names flow '{match.trigger.flow_id}', which is not"
            " published",
        )
    await refuse_when_overloaded_app(app)
    message = InboundMessage(
        id=0,
        institution_id=institution,
        conversation_id=conversation_id,
        message_id=body.message_id,
        contact_id=body.contact_id,
        text=body.plain_text(),
        received_at=now,
        payload=body.payload,
        content=body.content(),
    )
    try:
        execution, result = await state.runtime.engine.start_triggered(
            flow.flow_id,
            message,
            match,
            variables=with_language({"contact": dict(contact)} if contact else {}, body.language),
            replacing=replacing,
            actor=actor,
        )
    except ConversationBusy:
        return "busy"
    if execution is None:  # this message was stored before: a retry starts nothing
        return Delivered(result)
    state.wake()  # this process's workers run it now, not at their next poll
    return Delivered(result, match, replacing)


async def _store(
    store: Store,
    institution: str,
    conversation_id: str,
    body: InboundMessageIn,
    now: float,
    execution_id: str | None,
) -> InboundResult:
    """Store the message for ``execution_id``: duplicates are found first (whatever the
    execution's state), then an ended execution refuses it (:class:`ExecutionEnded`)."""
    return await store.deliver_inbound(
        institution_id=institution,
        conversation_id=conversation_id,
        message_id=body.message_id,
        contact_id=body.contact_id,
        text=body.plain_text(),
        payload=body.payload,
        now=now,
        execution_id=execution_id,
        content=body.content(),
    )


def _no_active(conversation_id: str, why: str = "") -> Problem:
    return Problem(
        404,
        f"conversation '{conversation_id}' has no active execution and no trigger started"
        f" one{why}: nothing was stored. Start a flow for it (POST /v1/executions), then"
        " send the message again",
        kind="no_active_execution",
    )


def _accepted(conversation_id: str, done: Delivered) -> JSONResponse:
    result, match, replacing = done.result, done.match, done.replacing
    message = result.message
    answer = {
        "accepted": True,
        "duplicate": result.status == "duplicate",
        "messageId": message.message_id,
        "conversationId": conversation_id,
        "executionId": message.execution_id,
        "receivedAt": iso(message.received_at),
    }
    if match is not None:  # only then: a reply is answered exactly as it always was
        replaced = replacing.id if replacing is not None else None
        answer |= {"started": True, "trigger": match.wire() | {"replaced": replaced}}
    return JSONResponse(answer, status_code=202)
