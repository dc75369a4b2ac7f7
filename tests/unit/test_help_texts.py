"""What a user reads says the thing itself: no help text nor API description cites a
document that is not in the repository (``DESIGN §7``) or a section sign at all.

Two sources are walked whole: every command of the ``trilha`` command (the Click tree
behind the Typer app: each command's help, short help and epilog, each argument's and
option's help), and the OpenAPI document the API serves (every summary, description and
title in it, the schemas' included)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import typer.main

from trilha.api.app import ServeOptions, create_app
from trilha.cli import app as cli_app
from trilha.config import Config
from trilha.core.flow import flow_json_schema
from trilha.processors.registry import Processors

#: a citation of a document outside the repository, or of a section of one
CITATION = re.compile(r"DESIGN|§")


def _commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


def _help_texts() -> Iterator[tuple[str, str]]:
    """``(where, text)`` for every text ``--help`` shows."""
    for path, command in _commands(typer.main.get_command(cli_app), ("trilha",)):
        where = " ".join(path)
        for attribute in ("help", "short_help", "epilog"):
            yield f"{where} ({attribute})", getattr(command, attribute, None) or ""
        for param in command.params:
            yield f"{where} {param.name}", getattr(param, "help", None) or ""


def test_the_walk_reaches_every_command_and_option() -> None:
    texts = dict(_help_texts())
    # the walk is not empty-handed: nested groups and options' help are in it
    assert "trilha keys create (help)" in texts
    assert texts["trilha logs as_json"].startswith("Print JSON lines")
    assert texts.get("trilha check (help)")
    assert CITATION.search("the invariants (DESIGN §7)")


def test_no_help_text_cites_a_document_outside_the_repository() -> None:
    cited = {where: text for where, text in _help_texts() if CITATION.search(text)}
    assert cited == {}


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}/{index}")
    elif isinstance(value, str):
        yield path, value


def test_the_api_document_cites_no_document_outside_the_repository() -> None:
    document = create_app(ServeOptions(), config=Config()).openapi()
    strings = dict(_strings(document, ""))
    assert len(strings) > 500  # the whole document, schemas and all, is walked
    assert any(path.endswith("/summary") for path in strings)
    cited = {path: text for path, text in strings.items() if CITATION.search(text)}
    assert cited == {}, json.dumps(cited, indent=1)


def test_the_flow_schema_cites_no_document_outside_the_repository() -> None:
    """An editor shows the schema's descriptions on hover: they are help texts too."""
    document = flow_json_schema(Processors.from_entry_points().node_types)
    strings = dict(_strings(document, ""))
    assert any(path.endswith("/description") for path in strings)
    cited = {path: text for path, text in strings.items() if CITATION.search(text)}
    assert cited == {}, json.dumps(cited, indent=1)


def test_the_command_list_shows_each_summary_as_one_paragraph() -> None:
    """``trilha --help`` wraps each command's summary to the terminal; a hard line break
    kept from a docstring left ragged half-lines in the list."""
    group = typer.main.get_command(cli_app)
    for name, command in getattr(group, "commands", {}).items():
        summary = command.short_help or (command.help or "").split("\n\n", 1)[0]
        assert summary and "\n" not in summary, (name, summary)


#: ``[logging]`` in a help text: rich reads it as a style tag and prints nothing of it
SWALLOWED = re.compile(r"(?<!\\)\[[a-z_]+(?:\.[a-zA-Z_]+)*\]")


def test_no_help_text_has_a_section_name_rich_would_swallow() -> None:
    """A configuration section named in help (``[retention]``) is escaped
    (``\\[retention]``), else ``--help`` shows a blank where it was."""
    swallowed = {where: text for where, text in _help_texts() if SWALLOWED.search(text)}
    assert swallowed == {}
