"""Signals: events from outside the conversation for an execution's ``wait_event`` node.

``POST /v1/executions/{executionId}/signals/{event}`` with ``{"signalId", "payload"}``
stores the signal durably (:func:`trilha.engine.signals.send_signal`) before it answers
202, and wakes the execution if it waits for that event; one that has not got there yet
keeps it, and takes it when it does. A repeated ``signalId`` for the execution is
applied once: the answer is the first signal's again (``"duplicate": true``), also
after the execution ended, so a sender's retry never turns into an error.

A new signal to an ended execution is 409 (``currentStatus`` says how it ended), as is
one more while ``[engine] max_pending_signals`` wait unconsumed; a payload larger than
``[engine] max_value_bytes`` (as JSON) is 422 naming ``body.payload``. Another
institution's execution is 404; a viewer key gets 403.

``GET /v1/executions/{executionId}/signals`` lists the execution's signals, pending and
consumed (with the step that took each), in the order they arrived.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, Field

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer, Writer
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import Problem, problems
from trilha.api.routes.executions import ExecutionIdPath, ExternalId, load_execution
from trilha.api.wire import storable
from trilha.core.execution import iso
from trilha.core.signals import EVENT_PATTERN, MAX_EVENT_CHARS, Signal
from trilha.core.wire import WireModel
from trilha.engine.signals import send_signal
from trilha.errors import LimitExceeded
from trilha.store.base import SignalResult

router = APIRouter(prefix="/v1/executions", tags=["signals"])

EventPath = Annotated[
    str,
    Path(
        pattern=EVENT_PATTERN,
        max_length=MAX_EVENT_CHARS,
        description="The event's name, as the flow's `wait_event` node names it"
        " (`payment.confirmed`): letters, digits, `_ . : -`.",
    ),
]
#: any JSON the store keeps unchanged (64-bit integers, finite numbers, valid Unicode)
Payload = Annotated[Any, AfterValidator(storable)]


class SignalIn(WireModel):
    signal_id: ExternalId = Field(
        description="The sender's id for this signal: a repeat is applied once, and"
        " answered with the first."
    )
    payload: Payload = Field(
        default=None,
        description="Any JSON (at most `[engine] max_value_bytes`): what the `wait_event`"
        " node saves in its `saveAs`.",
    )


class SignalAccepted(WireModel):
    accepted: bool = Field(description="Always true: the signal is stored.")
    duplicate: bool = Field(
        description="This signalId had been received already: the"
        " first signal is answered, nothing is stored."
    )
    execution_id: str
    event: str = Field(description="The event of the signal stored (the first one's).")
    signal_id: str
    received_at: str = Field(description="When it was first received.")
    consumed_at: str | None = Field(description="When a step took it (null: pending).")
    consumed_step: int | None = Field(description="The step that took it (`/steps`).")


class SignalOut(WireModel):
    signal_id: str
    event: str
    status: Literal["pending", "consumed"]
    payload: Any
    received_at: str
    consumed_at: str | None
    consumed_step: int | None


class SignalsOut(WireModel):
    execution_id: str
    signals: list[SignalOut]


@router.post(
    "/{executionId}/signals/{event}",
    summary="Send a signal (an event from outside) to an execution's wait_event node",
    status_code=202,
    responses={
        202: {"model": SignalAccepted, "description": "Stored (or a repeat, answered)."},
        **problems(
            403,
            404,
            409,
            **{
                "409": "The execution has ended (`currentStatus`), or holds"
                " `max_pending_signals` signals not consumed yet.",
                "422": "A bad event name or signalId, or a payload over `max_value_bytes`.",
            },
        ),
    },
)
async def deliver(
    request: Request,
    execution_id: ExecutionIdPath,
    event: EventPath,
    principal: Writer,
    body: SignalIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def run() -> JSONResponse:
        return await _deliver(request, principal, execution_id, event, body)

    return await idempotent(request, principal, idempotency_key, body, run)


async def _deliver(
    request: Request, principal: Principal, execution_id: str, event: str, body: SignalIn
) -> JSONResponse:
    state = state_of(request.app)
    try:
        result = await send_signal(
            state.runtime.engine,
            execution_id,
            event,
            payload=body.payload,
            signal_id=body.signal_id,
            # the store checks the row's institution: another one's execution is absent
            institution_id=principal.scope(),
        )
    except LimitExceeded as exc:
        raise _limit(exc) from None
    if result.status == "accepted":
        state.wake()  # this process's workers take it now, not at their next poll
    return JSONResponse(accepted_view(result), status_code=202)


def _limit(exc: LimitExceeded) -> Problem:
    extra = {"kind": "limit", "limit": exc.details.get("limit")}
    if exc.details.get("field") == "payload":
        return Problem(
            422,
            str(exc),
            kind=LimitExceeded.code,
            errors=[{"field": "body.payload", "message": str(exc)}],
            extra=extra | {"setting": "engine.max_value_bytes"},
        )
    return Problem(
        409,
        str(exc),
        kind=LimitExceeded.code,
        extra=extra | {"setting": "engine.max_pending_signals"},
    )


def accepted_view(result: SignalResult) -> dict[str, Any]:
    """The answer to a signal sent: the stored one (the first, for a repeat)."""
    signal = result.signal
    return {
        "accepted": True,
        "duplicate": result.status == "duplicate",
        "executionId": signal.execution_id,
        "event": signal.event,
        "signalId": signal.signal_id,
        "receivedAt": iso(signal.received_at),
        "consumedAt": iso(signal.consumed_at),
        "consumedStep": signal.consumed_step,
    }


def signal_view(signal: Signal) -> dict[str, Any]:
    return {
        "signalId": signal.signal_id,
        "event": signal.event,
        "status": "pending" if signal.pending else "consumed",
        "payload": signal.payload,
        "receivedAt": iso(signal.received_at),
        "consumedAt": iso(signal.consumed_at),
        "consumedStep": signal.consumed_step,
    }


@router.get(
    "/{executionId}/signals",
    summary="The execution's signals, pending and consumed, in the order they arrived",
    responses={200: {"model": SignalsOut}, **problems(404)},
)
async def list_signals(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    ex = await load_execution(store, principal, execution_id)
    signals = [signal_view(s) for s in await store.signals_for(ex.id)]
    return JSONResponse({"executionId": ex.id, "signals": signals})
