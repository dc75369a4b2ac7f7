"""Every API error is a problem document (RFC 9457), never a stack trace.

``{type, title, status, detail, errors?}`` with ``application/problem+json``:
``type`` is a stable URI naming the kind of problem (``urn:trilha:problem:...``,
derived from trilha's error codes) so clients branch on it rather than on prose;
``errors`` lists field problems as ``{field, message}`` with the field as a dotted
path (``body.variables.cpf``). Unexpected exceptions are logged with their stack
and answered 500 with nothing but an incident id to quote (by the app's outer
guard, :class:`trilha.api.app.Guard`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from trilha.api.wire import PATTERN_REASONS, invisible_character
from trilha.core.flow import format_loc
from trilha.errors import (
    ConfigError,
    ConversationBusy,
    CorruptedRecord,
    ExecutionEnded,
    ExecutionNotFound,
    FlowError,
    FlowNotFound,
    FlowValidationError,
    IllegalTransition,
    NotHeld,
    StaleLease,
    StoreUnavailable,
    TrilhaError,
)
from trilha.observability.logging import get_logger

log = get_logger("trilha.api")

MEDIA_TYPE = "application/problem+json"

#: seconds a client should wait before retrying when the store is briefly away
STORE_RETRY_AFTER = 2

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or _TITLES.get(status, "error").lower().replace(" ", "_")
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "type": f"urn:trilha:problem:{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return JSONResponse(
            body, status_code=self.status, headers=self.headers, media_type=MEDIA_TYPE
        )


def not_found(what: str) -> Problem:
    """The one answer for "absent" and "not yours": a foreign tenant learns nothing."""
    return Problem(404, f"no {what}", kind="not_found")


def from_error(exc: TrilhaError) -> Problem:
    """trilha's own errors, mapped to status codes once for every route."""
    code = str(getattr(exc, "code", "error"))
    if isinstance(exc, ExecutionNotFound | FlowNotFound):
        return Problem(404, str(exc), kind=code)
    if isinstance(exc, FlowValidationError):
        errors = [
            {"field": p.path or "flow", "message": p.message, "severity": p.severity}
            for p in exc.problems
        ]
        return Problem(422, str(exc), kind=code, errors=errors)
    if isinstance(exc, IllegalTransition):
        source = exc.details.get("source")
        current = getattr(source, "value", source)
        return Problem(409, str(exc), kind=code, extra={"currentStatus": current})
    if isinstance(exc, ConversationBusy | ExecutionEnded | NotHeld):
        return Problem(409, str(exc), kind=code, extra=_status_extra(exc))
    if isinstance(exc, StaleLease):
        return Problem(
            409, str(exc), kind=code, headers={"Retry-After": "1"}
        )  # the execution kept moving: read it again and retry
    if isinstance(exc, StoreUnavailable):
        return Problem(
            503,
            "the store is unavailable; nothing was changed, retry shortly",
            kind=code,
            headers={"Retry-After": str(STORE_RETRY_AFTER)},
        )
    if isinstance(exc, CorruptedRecord):
        return Problem(409, "the execution's stored state is being restored", kind=code)
    if isinstance(exc, FlowError | ConfigError):
        return Problem(422, str(exc), kind=code)
    return Problem(400, str(exc), kind=code)


def _status_extra(exc: TrilhaError) -> dict[str, Any]:
    status = exc.details.get("status")
    return {"currentStatus": getattr(status, "value", status)} if status is not None else {}


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": format_loc(tuple(err.get("loc", ()))) or "body", "message": _message(err)}
        for err in exc.errors()
    ]


def _message(err: Mapping[str, Any]) -> str:
    """The validator's message, but for a pattern that says little to a person, its
    reason and the offending character (``U+2028 at position 3``)."""
    message = str(err.get("msg", ""))
    if err.get("type") != "string_pattern_mismatch":
        return message
    reason = PATTERN_REASONS.get(str((err.get("ctx") or {}).get("pattern")))
    if reason is None:
        return message
    given = err.get("input")
    found = invisible_character(given) if isinstance(given, str) else None
    return f"{reason}; found {found}" if found else reason


def install(app: FastAPI) -> None:
    """Answer every error the app can raise with a problem document."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(TrilhaError)
    async def _trilha(_: Request, exc: TrilhaError) -> JSONResponse:
        return from_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                return _unparsed(err, exc.body).response()
        return Problem(
            422, "the request does not have the expected shape", kind="invalid", errors=errors
        ).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return _not_allowed(request)
        if exc.status_code == 400 and isinstance(
            exc.__cause__, UnicodeDecodeError | RecursionError
        ):
            return _undecoded(exc.__cause__).response()
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        return Problem(exc.status_code, detail, headers=exc.headers).response()


def malformed_json(reason: str, document: str, position: int) -> Problem:
    """400 for a body that is not JSON, saying where the parser stopped and why, as
    Python's parser words it: ``body is not valid JSON: Expecting ',' delimiter at line
    3, column 5 (char 42)``. Lines and columns count from 1, ``char`` from 0, over the
    body's text."""
    position = max(0, min(position, len(document)))
    line = document.count("\n", 0, position) + 1
    column = position - document.rfind("\n", 0, position)
    where = f"{reason} at line {line}, column {column} (char {position})"
    return Problem(
        400,
        f"body is not valid JSON: {where}",
        kind="malformed_json",
        errors=[
            {"field": "body", "message": where, "line": line, "column": column, "char": position}
        ],
    )


def _unparsed(err: Mapping[str, Any], body: Any) -> Problem:
    """The framework's ``json_invalid`` error: the parser's reason in ``ctx.error``, the
    character offset last in ``loc``, the text parsed in the exception's ``body``."""
    loc = tuple(err.get("loc", ()))
    position = loc[-1] if loc and isinstance(loc[-1], int) else 0
    reason = str((err.get("ctx") or {}).get("error") or "cannot be parsed")
    return malformed_json(reason, body if isinstance(body, str) else "", position)


def _undecoded(cause: UnicodeDecodeError | RecursionError) -> Problem:
    """A body the parser could not even read as text, or nested past its depth."""
    if isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    else:
        why = f"it is not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at byte {cause.start})"
    return Problem(
        400,
        f"body is not valid JSON: {why}",
        kind="malformed_json",
        errors=[{"field": "body", "message": why}],
    )


#: the methods a path is asked about for its ``Allow`` header
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path. The router hands a 405
    to the first route whose path matched, which knows only its own methods: ``GET``
    and ``POST /v1/executions`` are two routes. Each method is asked of the routes as
    the router itself would (``matches``), included routers and all."""
    routes = [r for r in request.app.router.routes if isinstance(r, BaseRoute)]
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


def _not_allowed(request: Request) -> JSONResponse:
    methods = allowed_methods(request)
    listed = ", ".join(methods)
    return Problem(
        405,
        f"{request.method} is not allowed on {request.url.path}; allowed: {listed}",
        kind="method_not_allowed",
        headers={"Allow": listed},
    ).response()


# ------------------------------------------------------------------------ OpenAPI documents


class FieldProblem(BaseModel):
    field: str = Field(description="Where: a dotted path such as `body.variables.cpf`.")
    message: str
    line: int | None = Field(
        default=None, description="On a body that is not valid JSON: the line (from 1)."
    )
    column: int | None = Field(
        default=None, description="On a body that is not valid JSON: the column (from 1)."
    )
    char: int | None = Field(
        default=None,
        description="On a body that is not valid JSON: the character offset (from 0).",
    )


class ProblemDocument(BaseModel):
    """An error (RFC 9457): branch on ``type``; ``detail`` is for people."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A stable URI naming the kind, `urn:trilha:problem:...`.")
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None
    currentStatus: str | None = Field(
        default=None, description="On a 409: the execution's state now."
    )
    executionId: str | None = Field(
        default=None, description="On a busy conversation: its active execution."
    )


_PROBLEM_TEXT = {
    400: "The body is not valid JSON (`detail` says where: line, column and character).",
    401: "No API key, one not sent as `Authorization: Bearer KEY` (`detail` says how to send"
    " it), or one that is not valid or was revoked (asked first, before the request's body"
    " is looked at).",
    408: "The body did not arrive within `api.body_timeout_seconds`.",
    403: "A viewer key asked to change something.",
    404: "No such thing, or it belongs to another institution.",
    409: "The execution's state does not allow it now (`currentStatus` says which it is).",
    413: "The body is over `api.max_body_bytes`.",
    415: "The body is not sent as JSON (`content-type: application/json`).",
    422: "The request does not have the expected shape (`errors` lists the fields).",
    429: "This key's rate limit; wait `Retry-After` seconds.",
    503: "The store is unreachable, or (starting executions) the queue is over its bound;"
    " wait `Retry-After` seconds.",
}


def problems(*codes: int, **override: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: problem documents for ``codes`` (401, 422, 429 and
    503 are added: every route can answer them; a write, one with 403, also takes a body
    that may be malformed, too large or not JSON: 400, 413, 415); ``override`` maps
    ``"409"`` to a text."""
    out: dict[int | str, dict[str, Any]] = {}
    body = {400, 413, 415} if 403 in codes else set()
    for code in sorted({*codes, *body, 401, 422, 429, 503}):
        out[code] = {
            "model": ProblemDocument,
            "description": override.get(str(code), _PROBLEM_TEXT.get(code, "An error.")),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}},
        }
    return out


#: what every route of the API answers, whatever it does: the key check (and the rate
#: limit and the store behind it), and for a request with a body, the app's outer guard
#: (:class:`trilha.api.app.Guard`), which reads every body of a write within its bounds
_KEYED = (401, 429, 503)
_BODY = (400, 408, 413, 415)
_PROBLEM_REF = "#/components/schemas/ProblemDocument"
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document of this API) with its error answers completed in
    place. The framework documents a 422 of its own shape as ``application/json`` and
    each problem twice (its model as ``application/json`` too); every error is answered
    as ``application/problem+json``, and what every keyed route or every body may answer
    is added where a route left it out."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ProblemDocument" not in components:
        found = ProblemDocument.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components["ProblemDocument"] = found
    for path, item in schema.get("paths", {}).items():
        keyed = path.startswith("/v1/") or path == "/metrics"
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            codes: set[int] = set(_KEYED) if keyed else set()
            if operation.get("parameters") or "requestBody" in operation:
                codes.add(422)
            if method in ("post", "put", "patch"):
                codes.update(_BODY)
            for code in sorted(codes):
                responses.setdefault(str(code), {"description": _PROBLEM_TEXT[code]})
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and _is_problem(response):
                    if _VALIDATION_REF in str(response.get("content")):
                        response["description"] = _PROBLEM_TEXT[422]
                    response["content"] = {MEDIA_TYPE: {"schema": {"$ref": _PROBLEM_REF}}}
    text = str(schema.get("paths"))
    if _VALIDATION_REF not in text:
        components.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in text:
            components.pop("ValidationError", None)
    return schema


def _is_problem(response: dict[str, Any]) -> bool:
    """Whether an error answer is a problem document (every error is, but for a route's
    own documented shape, such as ``/readyz``'s 503 that says which check failed)."""
    content = response.get("content") or {}
    if not content or MEDIA_TYPE in content:
        return True
    return _VALIDATION_REF in str(content)
