"""Erasing a contact: ``DELETE /v1/contacts/{contactId}`` (LGPD's right to be forgotten).

An admin key only (another key gets 403), acting for one institution: the one named by
``?institutionId=``, else the key's own. Every active execution of the contact there is
cancelled, then everything stored of the contact is deleted or irreversibly redacted,
and the process log file is rewritten without its lines (:mod:`trilha.engine.erasure`).
The answer is the receipt: what was removed, counted per kind. It is the same for a
contact never seen (zeros): erasing twice is erasing once, and the answer tells nothing
of whether a contact existed in another institution.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Principal, administrator
from trilha.api.problems import problems
from trilha.api.routes.executions import EXTERNAL_ID_PATTERN, InstitutionQuery, actor_of
from trilha.core.wire import WireModel
from trilha.engine.erasure import Eraser
from trilha.store.erasure import KINDS

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

Admin = Annotated[Principal, Depends(administrator)]

ContactIdPath = Annotated[
    str,
    Path(
        alias="contactId",
        pattern=EXTERNAL_ID_PATTERN,
        max_length=200,
        description="The contact's id, as messages name it (`contactId`; WhatsApp: the"
        " `wa_id`, the phone number's digits).",
    ),
]


class ErasureReceiptOut(WireModel):
    erasure_id: str = Field(description="The erasure's id, as its audit record keeps it.")
    contact_id: str | None = Field(description="The contact erased.")
    institution_id: str = Field(description="The institution it was erased in.")
    erased_at: str = Field(description="When (ISO-8601, UTC).")
    cancelled: int = Field(description="Active executions cancelled first.")
    removed: dict[str, int] = Field(
        description="Rows (and log file lines) removed or redacted, per kind: "
        + ", ".join(f"`{k}`" for k in KINDS)
        + "."
    )
    warnings: list[str] | None = Field(
        default=None,
        description="What could not be erased and is left to do (a log file that could not"
        " be rewritten); absent when everything went.",
    )


@router.delete(
    "/{contactId}",
    summary="Erase a contact: cancel its executions, delete its data everywhere",
    responses={200: {"model": ErasureReceiptOut}, **problems(403)},
)
async def forget_contact(
    request: Request,
    principal: Admin,
    contact_id: ContactIdPath,
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    state = state_of(request.app)
    rt = state.runtime
    institution = institution_id or principal.institution_id
    eraser = Eraser(rt.store, rt.operator, state.config, rt.engine.clock)
    receipt = await eraser.forget_contact(institution, contact_id, actor=actor_of(principal))
    return JSONResponse(receipt.wire())
