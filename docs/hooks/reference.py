"""MkDocs hook: the reference pages, generated from trilha itself at build time.

A thin shim over :mod:`trilha.reference_docs`, which renders the pages (and is
tested); here they only join the site's files, as if they were in ``docs/``, so
they are never stale. ``schema/flow.schema.json``, which the flow schema page links
to, is the checked-in file when there is one, else what ``trilha schema`` prints.
"""

from __future__ import annotations

import json
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from trilha.reference_docs import SCHEMA_FILE, flow_schema, pages


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Add each generated page to the site, as if it were a file in docs/."""
    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    if files.get_file_from_path(SCHEMA_FILE) is None:
        text = json.dumps(flow_schema(), indent=2, ensure_ascii=False) + "\n"
        files.append(File.generated(config, SCHEMA_FILE, content=text))
    return files
