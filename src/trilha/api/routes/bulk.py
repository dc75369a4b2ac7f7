"""Bulk actions over HTTP: pause, resume, cancel or retry every execution a listing's
filter matches (:mod:`trilha.engine.bulk`).

``POST /v1/executions/bulk`` takes ``{"action", "filter", "dryRun", "reason"}``, the
filter being the listing's (``GET /v1/executions``) as a body
(:class:`~trilha.api.execution_filters.ExecutionFilterBody`), always narrowed to the
key's institution (an admin key names one: ``institutionId``). A dry run answers how
many executions match, storing nothing; a real run stores a job and answers 202 with
it: the server acts on the executions in the background, in batches, each through the
operator control of that name (fenced, audited with the key as the actor and the
reason, which names the job), and ``GET /v1/executions/bulk/{jobId}`` shows how far it
is; ``GET /v1/executions/bulk`` lists the institution's jobs, newest first (an admin
key's every institution's, or ``?institutionId=``'s). An execution the action does not
apply to is skipped with its reason, not failed.

An operator key starts one (a viewer 403), any key of the institution reads it (404
for another institution's). Past ``[api] max_bulk_jobs`` running jobs of the
institution a start answers 429; a filter matching more than ``[api]
max_bulk_executions`` answers 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Viewer, Writer
from trilha.api.execution_filters import ExecutionFilterBody, filter_of
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import Problem, not_found, problems
from trilha.api.routes.executions import (
    InstitutionQuery,
    actor_of,
    institution_for,
    read_scope,
)
from trilha.api.wire import Text
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.wire import WireModel
from trilha.engine.bulk import BulkRunner, job_view
from trilha.errors import LimitExceeded

router = APIRouter(prefix="/v1/executions/bulk", tags=["operator"])

#: the most jobs one listing answers
MAX_JOBS = 100
#: seconds a start past ``max_bulk_jobs`` is asked to wait
BUSY_RETRY_AFTER = 5

ActionName = Literal["cancel", "pause", "resume", "retry"]

JobIdPath = Annotated[
    str,
    Path(
        alias="jobId",
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        max_length=100,
        description="The job's id, as the start answered it.",
    ),
]


class BulkRequest(WireModel):
    action: ActionName = Field(description="The operator control applied to each execution.")
    filter: ExecutionFilterBody = Field(
        default_factory=ExecutionFilterBody,
        description="The executions listing's filters (`GET /v1/executions`), as an object.",
    )
    dry_run: bool = Field(
        default=False, description="Only count the executions it would act on; store nothing."
    )
    reason: Text | None = Field(
        default=None,
        max_length=1_000,
        description="Why: kept in each execution's history, with the job's id.",
    )
    institution_id: str | None = Field(
        default=None,
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Admin keys: the institution whose executions (required).",
    )


class DryRunOut(WireModel):
    dry_run: Literal[True]
    action: ActionName
    total: int = Field(description="Executions the filter matches now.")


class NoteOut(WireModel):
    execution_id: str | None
    reason: str


class BulkJobOut(WireModel):
    job_id: str
    action: ActionName
    status: Literal["running", "completed", "failed"] = Field(
        description="`failed`: the job itself broke (`errors` says why); executions that"
        " failed are counted in `failed`."
    )
    total: int = Field(description="Executions the filter matched when the job started.")
    done: int = Field(description="Executions handled so far: succeeded + skipped + failed.")
    succeeded: int
    skipped: int = Field(description="The action did not apply to them (`skips` says why).")
    failed: int
    dry_run: Literal[False]
    reason: str | None
    actor: str
    institution_id: str
    filter: dict[str, Any] = Field(description="The filter as it was given.")
    created_at: str
    updated_at: str
    finished_at: str | None
    errors: list[NoteOut] = Field(description="The first few executions that failed, and why.")
    skips: list[NoteOut] = Field(description="The first few executions skipped, and why.")


def runner_of(request: Request) -> BulkRunner:
    runner: BulkRunner = request.app.state.bulk
    return runner


@router.post(
    "",
    summary="Pause, resume, cancel or retry every execution a filter matches",
    status_code=202,
    responses={
        200: {"model": DryRunOut, "description": "A dry run: how many it would act on."},
        202: {"model": BulkJobOut, "description": "Started: the job, running."},
        **problems(403, 404),
    },
)
async def start_bulk(
    request: Request,
    principal: Writer,
    body: BulkRequest,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    state = state_of(request.app)
    runner = runner_of(request)
    institution = institution_for(principal, body.institution_id)
    selection = await filter_of(
        body.filter,
        store=state.runtime.store,
        institution=institution,
        now=state.runtime.engine.clock.now(),
        stuck_grace=state.runtime.worker.sweeper.grace_seconds,
    )
    if body.dry_run:
        try:
            total = await runner.count(selection)
        except LimitExceeded as exc:
            raise _limit(exc, 422) from None
        return JSONResponse({"dryRun": True, "action": body.action, "total": total})

    async def run() -> JSONResponse:
        try:
            job = await runner.start(
                institution_id=institution,
                actor=actor_of(principal),
                action=body.action,
                given=body.filter.model_dump(by_alias=True, exclude_defaults=True),
                selection=selection,
                reason=body.reason,
            )
        except LimitExceeded as exc:
            busy = exc.details.get("bound") == "max_bulk_jobs"
            raise _limit(exc, 429 if busy else 422) from None
        return JSONResponse(
            job_view(job),
            status_code=202,
            headers={"Location": f"/v1/executions/bulk/{job.id}"},
        )

    return await idempotent(request, principal, institution, idempotency_key, body, run)


def _limit(exc: LimitExceeded, status: int) -> Problem:
    headers = {"Retry-After": str(BUSY_RETRY_AFTER)} if status == 429 else None
    return Problem(status, str(exc), kind="limit", headers=headers)


class BulkJobPage(WireModel):
    jobs: list[BulkJobOut]


@router.get(
    "",
    summary="Bulk actions, newest first",
    responses={200: {"model": BulkJobPage}, **problems(404)},
)
async def list_bulk(
    request: Request,
    principal: Viewer,
    status: Annotated[
        Literal["running", "completed", "failed"] | None, Query(description="Only these.")
    ] = None,
    institution_id: InstitutionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS)] = 20,
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    jobs = await store.bulk_jobs(
        institution_id=read_scope(principal, institution_id), status=status, limit=limit
    )
    return JSONResponse({"jobs": [job_view(job) for job in jobs]})


@router.get(
    "/{jobId}",
    summary="A bulk action's progress",
    responses={200: {"model": BulkJobOut}, **problems(404)},
)
async def get_bulk(request: Request, job_id: JobIdPath, principal: Viewer) -> JSONResponse:
    job = await state_of(request.app).runtime.store.get_bulk_job(job_id)
    if job is None or not principal.sees(job.institution_id):
        raise not_found(f"bulk action '{job_id}'")
    return JSONResponse(job_view(job))
