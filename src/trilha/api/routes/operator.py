"""Operator controls over HTTP: pause, resume, cancel, advance, retry, and variables.

Each route is :class:`~trilha.engine.operator.Operator`'s operation of the same
name, acting as the key (``key:<id>`` is the actor in the state history and the
trail) with the optional ``reason`` of the body: who, when, what and why are kept
(``GET /v1/executions/{id}/history`` shows both the state changes and the audit of
every operation). An operation the execution's state does not allow answers 409 with
``currentStatus``; another institution's execution is 404; a viewer key gets 403.
Each answers the execution as it is right after the change; the workers run it
from there.

* ``retry`` runs the failed node of a ``recovering`` execution (one waiting for its
  next attempt after a backoff, or for a dependency) now; the attempt counts toward
  the node's ``maxAttempts``. A ``failed`` execution cannot be retried: ``failed`` is
  final in the transition table (DESIGN §3), so the answer is 409; start a new
  execution for the conversation instead.
* ``PATCH .../variables`` takes ``{"set": {"path": value}, "unset": ["path"]}`` with
  dotted paths (``customer.address.city``): removals first, then assignments; a list
  item cannot be addressed by index (set the whole list). It works on any active
  execution, paused ones included, and answers 409 on an ended one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, field_validator, model_validator

from trilha.api.app import state_of
from trilha.api.auth import Principal, Writer
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import problems
from trilha.api.routes.executions import (
    ExecutionIdPath,
    ExecutionOut,
    actor_of,
    execution_answer,
    load_execution,
)
from trilha.api.wire import JsonObject, Text
from trilha.core.execution import Execution
from trilha.core.wire import WireModel
from trilha.engine.operator import MAX_VARIABLE_PATHS, Operator, variable_path_problem

router = APIRouter(prefix="/v1/executions", tags=["operator"])

NODE_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class OperatorRequest(WireModel):
    reason: Text | None = Field(
        default=None, max_length=1_000, description="Why: kept in the state history."
    )


class AdvanceRequest(OperatorRequest):
    to_node_id: str | None = Field(
        default=None,
        pattern=NODE_ID_PATTERN,
        max_length=100,
        description="The node to move to (of the flow version the execution is pinned to);"
        " default: the current node's next.",
    )


class VariablesPatch(OperatorRequest):
    """Dotted paths to set and to remove (removals first); at least one of the two."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["set"]}, {"required": ["unset"]}]}
    )

    assign: JsonObject = Field(
        default_factory=dict,
        alias="set",
        min_length=1,
        max_length=MAX_VARIABLE_PATHS,
        description='Path -> new value, e.g. `{"customer.vip": true}`.',
    )
    unset: list[str] = Field(
        default_factory=list,
        min_length=1,
        max_length=MAX_VARIABLE_PATHS,
        description="Paths to remove; one that is not there is no error.",
    )

    @field_validator("assign")
    @classmethod
    def _apart(cls, assign: dict[str, Any]) -> dict[str, Any]:
        """Each path is one an operator may write, and no two overlap: with ``a`` and
        ``a.b`` in one ``set``, one would be silently overwritten or merged into the
        other, depending on their order. Refused, naming both (set ``a`` to the whole
        object instead)."""
        _writable(assign)
        for longer in sorted(assign):
            parts = longer.split(".")
            for end in range(1, len(parts)):
                shorter = ".".join(parts[:end])
                if shorter in assign:
                    raise ValueError(
                        f"paths {shorter!r} and {longer!r} overlap: one would overwrite the"
                        f" other; set {shorter!r} to the whole value instead"
                    )
        return assign

    @field_validator("unset")
    @classmethod
    def _removable(cls, unset: list[str]) -> list[str]:
        _writable(unset)
        return unset

    @model_validator(mode="after")
    def _paths(self) -> VariablesPatch:
        if not self.assign and not self.unset:
            raise ValueError("nothing to change: give `set` or `unset`")
        both = set(self.assign) & set(self.unset)
        if both or len(set(self.unset)) != len(self.unset):
            twice = sorted(both) or sorted({p for p in self.unset if self.unset.count(p) > 1})
            raise ValueError(f"paths named twice: {', '.join(twice)}")
        return self


def _writable(paths: Iterable[str]) -> None:
    for path in paths:
        problem = variable_path_problem(path)
        if problem is not None:
            raise ValueError(f"variable path {path!r}: {problem}")


_Call = Callable[[Operator, str, str, Any], Awaitable[Execution]]

_CONFLICT = {"409": "The execution's state does not allow it (`currentStatus`)."}


async def _operate(
    request: Request,
    principal: Principal,
    execution_id: str,
    key: str | None,
    body: OperatorRequest | None,
    call: _Call,
) -> JSONResponse:
    """Check the tenant (404), then run ``call`` once per Idempotency-Key."""
    state = state_of(request.app)
    store = state.runtime.store
    ex = await load_execution(store, principal, execution_id)
    given = body or OperatorRequest()

    async def run() -> JSONResponse:
        ex = await call(state.runtime.operator, execution_id, actor_of(principal), given)
        state.wake()  # resume, advance, retry: due now
        return await execution_answer(request, principal, ex)

    return await idempotent(request, principal, ex.institution_id, key, body, run)


def _answers(summary: str, *extra: int) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {
            200: {"model": ExecutionOut, "description": "Done: the execution as it is now."},
            **problems(403, 404, 409, *extra, **_CONFLICT),
        },
    }


OptionalReason = Annotated[OperatorRequest | None, Body()]


def _simple(operation: str, summary: str) -> None:
    """Register ``POST /{executionId}/<operation>``: an optional ``{reason}`` body, the
    Operator method of that name, audited and idempotent like every control."""

    async def control(
        request: Request,
        execution_id: ExecutionIdPath,
        principal: Writer,
        body: OptionalReason = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        return await _operate(
            request,
            principal,
            execution_id,
            idempotency_key,
            body,
            lambda op, eid, actor, b: getattr(op, operation)(eid, actor=actor, reason=b.reason),
        )

    control.__name__ = operation
    router.post(f"/{{executionId}}/{operation}", **_answers(summary))(control)


_simple("pause", "Pause an active execution where it is")
_simple("resume", "Resume a paused execution in the state it left")
_simple("cancel", "Cancel an active execution")
_simple("retry", "Retry the failed step of a recovering execution now")


@router.post(
    "/{executionId}/advance",
    **_answers("Move an active execution to a node (default: the current node's next)", 422),
)
async def advance(
    request: Request,
    execution_id: ExecutionIdPath,
    principal: Writer,
    body: Annotated[AdvanceRequest | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await _operate(
        request,
        principal,
        execution_id,
        idempotency_key,
        body,
        lambda op, eid, actor, b: op.advance(
            eid, getattr(b, "to_node_id", None), actor=actor, reason=b.reason
        ),
    )


@router.patch(
    "/{executionId}/variables",
    **_answers("Set and unset an active execution's variables", 422),
)
async def patch_variables(
    request: Request,
    execution_id: ExecutionIdPath,
    principal: Writer,
    body: VariablesPatch,
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    await load_execution(store, principal, execution_id)
    ex = await state.runtime.operator.set_variables(
        execution_id, body.assign, body.unset, actor=actor_of(principal), reason=body.reason
    )
    return await execution_answer(request, principal, ex)
