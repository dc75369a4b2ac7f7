"""MkDocs hook: the reference pages, generated from trilha itself at build time.

Placeholder: generates nothing yet (issue 20, docs-reference owns it)."""

from __future__ import annotations

from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGES = {
    "flows/node-types.md": "# Node types\n",
    "api/reference.md": "# Endpoints\n",
    "reference/cli.md": "# Command line\n",
    "reference/configuration.md": "# Configuration\n",
    "reference/flow-schema.md": "# Flow schema\n",
}


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Add each generated page to the site, as if it were a file in docs/."""
    for path, text in PAGES.items():
        files.append(File.generated(config, path, content=text))
    return files
