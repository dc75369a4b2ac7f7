"""``/openapi.json``: the framework's document, made to say what the routes answer.

Two things are added to what FastAPI derives from the routes:

* every error answer as the problem document it is (:func:`trilha.api.problems.complete`);
* links between operations (OpenAPI ``links``): the ``executionId`` an execution's
  start answers is what every route of that execution takes, and so on. A client
  generator, or a fuzzer's stateful phase, follows them with real ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from trilha.api.problems import complete


@dataclass(frozen=True, slots=True)
class Link:
    """``target`` takes ``parameter`` from the ``source``'s answer at ``pointer``."""

    source: tuple[str, str, str]  # method, path, status
    target: tuple[str, str]  # method, path
    parameter: str
    pointer: str


_EXECUTION = "/v1/executions/{executionId}"
#: what an execution's id opens: reading it, and every operator control
_EXECUTION_ROUTES = [
    ("get", _EXECUTION),
    ("get", f"{_EXECUTION}/history"),
    ("get", f"{_EXECUTION}/steps"),
    ("get", f"{_EXECUTION}/logs"),
    ("get", f"{_EXECUTION}/transcript"),
    ("get", f"{_EXECUTION}/graph"),
    ("get", f"{_EXECUTION}/variables"),
    ("patch", f"{_EXECUTION}/variables"),
    ("post", f"{_EXECUTION}/pause"),
    ("post", f"{_EXECUTION}/resume"),
    ("post", f"{_EXECUTION}/cancel"),
    ("post", f"{_EXECUTION}/retry"),
    ("post", f"{_EXECUTION}/advance"),
]
#: the answer that makes an execution: where its id comes from (the routes that take
#: the id answer it too, but a chain cannot start at one of them)
_START = ("post", "/v1/executions", "201")

LINKS: list[Link] = [
    *(Link(_START, target, "executionId", "/executionId") for target in _EXECUTION_ROUTES),
    Link(
        _START,
        ("post", "/v1/conversations/{conversationId}/messages"),
        "conversationId",
        "/conversationId",
    ),
    *(
        Link(("put", "/v1/flows/{flowId}", status), ("get", target), "flowId", "/flowId")
        for status in ("200", "201")
        for target in ("/v1/flows/{flowId}", "/v1/flows/{flowId}/versions")
    ),
    Link(("get", "/v1/outbox", "200"), ("post", "/v1/outbox/{id}/redrive"), "id", "/messages/0/id"),
    Link(
        ("post", "/v1/executions/bulk", "202"),
        ("get", "/v1/executions/bulk/{jobId}"),
        "jobId",
        "/jobId",
    ),
    Link(
        ("get", "/v1/outbox", "200"),
        ("get", _EXECUTION),
        "executionId",
        "/messages/0/executionId",
    ),
]


def document(app: FastAPI) -> None:
    """Serve the completed document (built once, on the first request for it)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(complete(original()))
        return app.openapi_schema or {}

    setattr(app, "openapi", openapi)  # noqa: B010  # mypy: a method cannot be assigned


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with :data:`LINKS` in its answers, each naming its target by
    ``operationId`` (read from the document, so renaming a route renames its links)."""
    paths = schema.get("paths", {})
    for link in LINKS:
        method, path, status = link.source
        target_method, target_path = link.target
        answer = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        target = paths.get(target_path, {}).get(target_method)
        if answer is None or target is None:
            raise RuntimeError(f"OpenAPI link from {link.source} to {link.target}: no such answer")
        name = _name(target_method, target_path)
        answer.setdefault("links", {})[name] = {
            "operationId": target["operationId"],
            "parameters": {link.parameter: f"$response.body#{link.pointer}"},
        }
    return schema


def _name(method: str, path: str) -> str:
    """A link's name from its target: ``GetExecutionHistory``, ``PostConversationMessages``
    (a collection named before an id is said in the singular)."""
    parts = [part for part in path.split("/") if part not in ("", "v1")]
    words = [method.capitalize()]
    for part, following in zip(parts, [*parts[1:], ""], strict=True):
        if part.startswith("{"):
            continue
        single = following.startswith("{") and part.endswith("s")
        words.append((part[:-1] if single else part).capitalize())
    return "".join(words)
