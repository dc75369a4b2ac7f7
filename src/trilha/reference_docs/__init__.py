"""The docs site's reference pages, generated from trilha itself at build time.

The MkDocs hook ``docs/hooks/reference.py`` adds :func:`pages` to the site as if they
were files in ``docs/``, so a new command, configuration key, node type or route is
documented by the next build, and no page can fall behind the code:

* ``reference/cli.md``: every command, from the typer app's command tree;
* ``reference/configuration.md``: every key of ``trilha.toml``, from its models;
* ``reference/flow-schema.md`` and ``flows/node-types.md``: from the flow's JSON Schema;
* ``api/reference.md`` and ``api/openapi.json``: from the served OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any

from trilha.reference_docs.api_reference import OPENAPI_FILE, api_page, openapi_document
from trilha.reference_docs.cli_reference import cli_page
from trilha.reference_docs.config_reference import config_keys, config_page
from trilha.reference_docs.schema_reference import (
    SCHEMA_FILE,
    flow_schema_page,
    node_types,
    node_types_page,
)

__all__ = [
    "SCHEMA_FILE",
    "config_keys",
    "flow_schema",
    "node_types",
    "pages",
]


def flow_schema() -> dict[str, Any]:
    """The flow's JSON Schema as ``trilha schema`` prints it (every registered type)."""
    from trilha.core.flow import flow_json_schema
    from trilha.processors.registry import Processors

    return flow_json_schema(Processors.from_entry_points().node_types)


def pages() -> dict[str, str]:
    """Every generated file by its path in the site: the Markdown pages, and the
    OpenAPI document the API page links to."""
    import typer.main

    from trilha.cli import app
    from trilha.config import Config

    schema = flow_schema()
    document = openapi_document()
    return {
        "reference/cli.md": cli_page(typer.main.get_command(app)),
        "reference/configuration.md": config_page(Config),
        "reference/flow-schema.md": flow_schema_page(schema),
        "flows/node-types.md": node_types_page(schema),
        "api/reference.md": api_page(document),
        f"api/{OPENAPI_FILE}": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
    }
