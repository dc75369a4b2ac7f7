"""The executions listing's filters as a JSON body, for the routes that act on many
executions at once (bulk actions, moving executions to a new flow version).

``GET /v1/executions`` takes its filters as query parameters; an action on what such a
listing shows takes the same filters, under the same names, as ``"filter": {...}`` in
its body, so an operator narrows a listing, then acts on exactly that. Both build the
store's :class:`~trilha.store.base.ExecutionFilter` through
:func:`~trilha.api.routes.executions.execution_filter`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from trilha.api.listing import (
    DEPENDENCY_PATTERN,
    NODE_ID_PATTERN,
    STORED_FLOW_ID_PATTERN,
    ErrorKindName,
    OutcomeName,
    StatusName,
)
from trilha.api.wire import PRINTABLE_ID_PATTERN
from trilha.core.wire import WireModel
from trilha.store.base import ExecutionFilter, Store


class ExecutionFilterBody(WireModel):
    """The listing's filters (``GET /v1/executions``), each optional; none narrows
    nothing but the key's institution."""

    status: StatusName | None = Field(default=None, description="Only this state.")
    outcome: OutcomeName | None = Field(
        default=None, description="Only ended executions that ended so."
    )
    flow_id: Annotated[str, Field(pattern=STORED_FLOW_ID_PATTERN, max_length=200)] | None = Field(
        default=None, description="Only this flow: its name, or its stored id."
    )
    conversation_id: Annotated[str, Field(pattern=PRINTABLE_ID_PATTERN, max_length=200)] | None = (
        Field(default=None, description="Only this conversation's executions.")
    )
    contact_id: Annotated[str, Field(pattern=PRINTABLE_ID_PATTERN, max_length=200)] | None = Field(
        default=None, description="Only this contact's executions."
    )
    stuck: bool = Field(
        default=False,
        description="Only active executions nothing is moving on, and overdue work no"
        " worker has claimed.",
    )
    with_errors: bool = Field(
        default=False, description="Only executions with an error now or a failed step."
    )
    error_node: Annotated[str, Field(pattern=NODE_ID_PATTERN, max_length=100)] | None = Field(
        default=None, description="Only executions with a failed step of this node."
    )
    error_kind: ErrorKindName | None = Field(
        default=None, description="... that failed with this kind of error."
    )
    error_status: Annotated[int, Field(ge=100, le=599)] | None = Field(
        default=None, description="... on this HTTP status from the dependency."
    )
    error_dependency: Annotated[str, Field(pattern=DEPENDENCY_PATTERN, max_length=200)] | None = (
        Field(default=None, description="... calling this dependency.")
    )
    since: Annotated[str, Field(max_length=40)] | None = Field(
        default=None,
        description="Only failures at or after this time: unix seconds or ISO-8601 with a zone.",
    )


async def filter_of(
    body: ExecutionFilterBody,
    *,
    store: Store,
    institution: str | None,
    now: float,
    stuck_grace: float,
) -> ExecutionFilter:
    """The store's filter ``body`` means for ``institution`` (``None``: every one, for an
    admin key), built as the listing builds its own; ``since`` that is not a time is 422
    naming it."""
    # the listing's route builds it; imported here, when the routers are all loaded
    from trilha.api.routes.executions import execution_filter

    return await execution_filter(
        store,
        institution,
        now=now,
        stuck_grace=stuck_grace,
        **body.model_dump(),
    )
