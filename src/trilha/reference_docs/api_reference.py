"""``api/reference.md``: every route of the HTTP API, from the OpenAPI document
``trilha serve`` answers at ``/openapi.json``.

The document comes from the app itself (:func:`openapi_document`), built the way
``serve`` builds it but never started: nothing is opened, no store and no network,
so the build needs nothing running and the page is never older than the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from trilha.reference_docs.markdown import anchor, cell, code, paragraphs, table
from trilha.reference_docs.schema_reference import (
    NODES,
    markdown_text,
    properties_table,
    resolve,
    type_text,
)

#: HTTP methods in the order an operation's section lists them
METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")

#: the file the page links to, next to it in the site
OPENAPI_FILE = "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of ``trilha serve`` with the default configuration (the
    routes do not depend on it), completed as ``/openapi.json`` serves it."""
    from trilha.api.app import ServeOptions, create_app
    from trilha.config import Config

    app = create_app(ServeOptions(workers=0), config=Config())
    return app.openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every operation as ``(method, path, operation)``, in the document's order."""
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                yield method, path, operation


def operation_anchor(method: str, path: str) -> str:
    return anchor(method, path)


def schema_anchor(name: str) -> str:
    return anchor("schema", name)


def _link(name: str) -> str:
    if name == NODES:  # a flow's nodes: the flow schema's reference lists the types
        return "../reference/flow-schema.md#node-types"
    return f"#{schema_anchor(name)}"


def _parameters(document: dict[str, Any], operation: dict[str, Any]) -> str:
    params = [resolve(document, p) for p in operation.get("parameters", [])]
    if not params:
        return ""
    rows = [
        [
            code(str(p.get("name", ""))),
            str(p.get("in", "")),
            type_text(document, p.get("schema", {}), _link),
            "yes" if p.get("required") else "no",
            cell(markdown_text(p.get("description") or p.get("schema", {}).get("description"))),
        ]
        for p in params
    ]
    return "**Parameters**\n\n" + table(["Name", "In", "Type", "Required", "Description"], rows)


def _body(document: dict[str, Any], operation: dict[str, Any]) -> str:
    body = resolve(document, operation.get("requestBody", {}))
    content: dict[str, Any] = body.get("content", {})
    if not content:
        return ""
    parts = ["\n**Request body**"]
    parts.append(" (required)" if body.get("required") else " (optional)")
    parts.append("\n\n")
    parts.append(paragraphs(markdown_text(body.get("description"))))
    for media, spec in content.items():
        schema = spec.get("schema", {})
        parts.append(f"`{media}`: {type_text(document, schema, _link)}\n\n")
        target = resolve(document, schema)
        parts.append(properties_table(document, target, _link))
    return "".join(parts)


def _responses(document: dict[str, Any], operation: dict[str, Any]) -> str:
    responses: dict[str, Any] = operation.get("responses", {})
    if not responses:
        return ""
    rows = []
    for status in sorted(responses, key=str):
        answer = resolve(document, responses[status])
        bodies = [
            f"`{media}`: {type_text(document, spec.get('schema', {}), _link)}"
            if spec.get("schema")
            else f"`{media}`"
            for media, spec in answer.get("content", {}).items()
        ]
        rows.append(
            [f"`{status}`", cell(markdown_text(answer.get("description"))), "<br>".join(bodies)]
        )
    return "\n**Responses**\n\n" + table(["Status", "Meaning", "Body"], rows)


def _operation(document: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> str:
    parts = [f"### `{method.upper()} {path}` {{#{operation_anchor(method, path)}}}\n\n"]
    if op.get("summary"):
        parts.append(paragraphs(f"**{op['summary']}**"))
    parts.append(paragraphs(markdown_text(op.get("description"))))
    if op.get("deprecated"):
        parts.append("Deprecated.\n\n")
    parts.append(_parameters(document, op))
    parts.append(_body(document, op))
    parts.append(_responses(document, op))
    return "".join(parts).rstrip("\n") + "\n\n"


def api_page(document: dict[str, Any]) -> str:
    """The whole page: the routes grouped by tag (in the order tags first appear),
    then every schema the routes refer to."""
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for method, path, op in operations(document):
        groups.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    described = {t.get("name"): t.get("description") for t in document.get("tags", [])}
    info = document.get("info", {})
    out = [
        "# Endpoints\n\n",
        f"Every route of trilha's HTTP API (version {info.get('version', '?')}), generated at"
        " build time from the OpenAPI document `trilha serve` answers at `/openapi.json`;"
        f" the document itself is [{OPENAPI_FILE}]({OPENAPI_FILE}), for client"
        " generators and tools.\n\n",
    ]
    out.append(
        table(
            ["Route", "What it does"],
            [
                [
                    f"[`{method.upper()} {path}`](#{operation_anchor(method, path)})",
                    cell(op.get("summary")),
                ]
                for ops in groups.values()
                for method, path, op in ops
            ],
        )
        + "\n"
    )
    for tag, ops in groups.items():
        out.append(f"## {tag.capitalize()} {{#{anchor('tag', tag)}}}\n\n")
        out.append(paragraphs(markdown_text(described.get(tag))))
        out.extend(_operation(document, method, path, op) for method, path, op in ops)
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    if schemas:
        out.append("## Schemas {#schemas}\n\n")
        out.append("The objects the routes take and answer.\n\n")
        for name, fragment in sorted(schemas.items()):
            out.append(f"### `{name}` {{#{schema_anchor(name)}}}\n\n")
            out.append(paragraphs(markdown_text(fragment.get("description"))))
            body = properties_table(document, fragment, _link)
            out.append((body or f"Type: {type_text(document, fragment, _link)}.\n") + "\n")
    return "".join(out).rstrip("\n") + "\n"
