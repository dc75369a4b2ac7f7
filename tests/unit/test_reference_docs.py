"""The docs site's generated reference pages: every command, configuration key, node
type and route is on its page, read from trilha itself; and what lands in a table
cannot break it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import typer
import typer.main
from pydantic import BaseModel, Field

from trilha.cli import app
from trilha.config import Config
from trilha.processors.registry import Processors
from trilha.reference_docs import config_keys, node_types, pages
from trilha.reference_docs.api_reference import api_page, operations
from trilha.reference_docs.cli_reference import cli_page
from trilha.reference_docs.config_reference import config_page
from trilha.reference_docs.markdown import cell, code
from trilha.reference_docs.schema_reference import (
    COMMON_NODE_TYPES,
    flow_schema_page,
    markdown_text,
    node_types_page,
)


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    """Every generated file, built once for the module (the OpenAPI document is the
    slow part: the app's routes and their schemas)."""
    return pages()


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    """The typer app's command tree, walked here independently of the page's walker."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, f"{path} {name}")


def _section(page: str, heading: str) -> str:
    """The text under the heading that holds ``heading``, up to the next heading."""
    match = re.search(rf"^#+ {re.escape(heading)}.*?$(.*?)(?=^#+ |\Z)", page, re.M | re.S)
    assert match, f"no heading {heading!r}"
    return match.group(1)


# ------------------------------------------------------------------------------- markdown


def test_cell_escapes_pipes_newlines_and_html_outside_code() -> None:
    """A help text cannot split a cell or a row, nor vanish as an HTML tag; a code span
    keeps its pipe (Python-Markdown keeps it in the cell and would show a backslash)."""
    text = "a | b\nc <base64>\n\nnext `x | y` end"
    assert cell(text) == "a \\| b c &lt;base64&gt;<br>next `x | y` end"
    assert "\n" not in cell("one\ntwo\r\nthree")
    assert cell(None) == ""


def test_code_survives_backticks() -> None:
    """A value holding backticks still makes one code span."""
    assert code("plain") == "`plain`"
    assert code("a`b") == "``a`b``"


# ------------------------------------------------------------------------------------ cli


def test_every_command_and_option_is_on_the_cli_page(generated: dict[str, str]) -> None:
    """Each registered command (and sub-command) has its section, with each of its
    options and arguments."""
    page = generated["reference/cli.md"]
    seen = 0
    for path, command in _commands(typer.main.get_command(app), "trilha"):
        section = _section(page, f"`{path}`")
        assert f"```\n{path} " in section, path
        for param in command.params:
            name = param.name if param.param_type_name == "argument" else param.opts[0]
            assert f"`{name}`" in section, (path, name)
        seen += 1
    assert seen > 20


def test_a_new_command_appears_by_itself() -> None:
    """Nothing is written per command: a fresh app's command, sub-command, options,
    defaults and help all come out, a pipe in a help text escaped."""
    demo = typer.Typer(help="A demo tool.")
    inner = typer.Typer(help="Things inside.")
    demo.add_typer(inner, name="inner")

    @demo.command()
    def greet(
        name: Annotated[str, typer.Argument(help="Who to greet.")],
        times: Annotated[int, typer.Option("--times", min=1, max=9, help="a | b")] = 2,
        loud: Annotated[bool, typer.Option("--loud", help="Shout.")] = False,
    ) -> None:
        """Say hello.

        A second paragraph."""

    @inner.command("deep")
    def deep(
        where: Annotated[str, typer.Option("--where", envvar="DEMO_WHERE", help="Where.")] = "x",
    ) -> None:
        """Go deep."""

    page = cli_page(typer.main.get_command(demo), "demo")
    greet_section = _section(page, "`demo greet`")
    assert "Say hello.\n\nA second paragraph." in greet_section
    assert "| `name` | str | required | Who to greet. |" in greet_section
    assert "| `--times` | int, ≥ 1, ≤ 9 | `2` | a \\| b |" in greet_section
    assert "| `--loud` | flag |  | Shout. |" in greet_section
    deep_section = _section(page, "`demo inner deep`")
    assert "| `--where` | str | `x` | Where. Environment: `DEMO_WHERE`. |" in deep_section
    assert "[`deep`](#demo-inner-deep)" in _section(page, "`demo inner`")


# -------------------------------------------------------------------------- configuration


def test_every_configuration_key_has_a_description() -> None:
    """A key of trilha.toml without a description would show an empty cell: the field
    needs ``Field(description=...)``."""
    keys = list(config_keys(Config))
    missing = [f"{k.section.header or '(top)'} {k.name}" for k in keys if not k.field.description]
    assert missing == []
    assert len(keys) > 100


def test_every_configuration_key_is_on_its_section(generated: dict[str, str]) -> None:
    """Each key is a row of its table's section, the tables named as TOML writes them."""
    page = generated["reference/configuration.md"]
    for key in config_keys(Config):
        section = _section(page, f"`{key.section.header}`" if key.section.header else "Top level")
        assert f"| `{key.name}` |" in section, (key.section.header, key.name)
    for header in (
        "[api]",
        "[channel.whatsapp]",
        "[[channel.whatsapp.numbers]]",
        "[dependencies.NAME]",
        "[dependencies.NAME.breaker]",
        "[alerts.rules.NAME]",
        "[[triggers]]",
    ):
        assert f"`{header}`" in page


def test_a_key_without_description_is_found() -> None:
    """The walk reaches models nested in tables, named tables and arrays of tables, so
    the description test cannot miss a key."""

    class Leaf(BaseModel):
        bare: int = 1
        told: str = Field(default="x", description="Told | here.")

    class Root(BaseModel):
        one: Leaf = Field(default_factory=Leaf, description="One.")
        named: dict[str, Leaf] = Field(default_factory=dict, description="Named.")
        many: list[Leaf] = Field(default_factory=list, description="Many.")

    bare = {k.section.header for k in config_keys(Root) if not k.field.description}
    assert bare == {"[one]", "[named.NAME]", "[[many]]"}
    page = config_page(Root)
    assert '| `told` | string | `"x"` | Told \\| here. |' in page


# ---------------------------------------------------------------------------- flow schema


def test_every_node_type_is_on_the_node_types_page(generated: dict[str, str]) -> None:
    """Each registered processor's node type has its section, the common ones first."""
    page = generated["flows/node-types.md"]
    registered = set(Processors.from_entry_points().node_types.models)
    headings = re.findall(r"^## `([a-z_]+)`", page, re.M)
    assert set(headings) == registered
    assert headings[: len(COMMON_NODE_TYPES)] == list(COMMON_NODE_TYPES)
    flow_page = generated["reference/flow-schema.md"]
    for name in registered:
        assert f"### `{name}` {{#node-{name.replace('_', '-')}}}" in flow_page


def _tiny_schema(with_help: bool) -> dict[str, Any]:
    """A flow schema of two node types, with or without descriptions and examples."""
    help_: dict[str, Any] = {"description": "Say it.", "examples": ["hi"]} if with_help else {}
    node: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "message"},
            "text": {"type": "string", **help_},
            "buttons": {"type": "array", "items": {"$ref": "#/$defs/Button"}},
        },
        "required": ["id", "type"],
    }
    if with_help:
        node["description"] = "Send a | message."
        node["examples"] = [{"id": "hi", "type": "message", "text": "hi"}]
    other = {"type": "object", "properties": {"type": {"const": "zeta"}}}
    top: dict[str, Any] = {}
    if with_help:
        top = {"$id": "https://example.com/flow.json", "examples": [{"id": "tiny"}]}
    return {
        **top,
        "type": "object",
        "properties": {
            "nodes": {
                "type": "array",
                "items": {
                    "oneOf": [{"$ref": "#/$defs/ZetaNode"}, {"$ref": "#/$defs/MessageNode"}],
                    "discriminator": {"propertyName": "type"},
                },
            }
        },
        "$defs": {
            "MessageNode": node,
            "ZetaNode": other,
            "Button": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    }


def test_node_types_show_their_description_example_and_properties() -> None:
    """A node type's description, its first example as a JSON block, and each
    property's description and example are rendered; references link to the schema
    page's definitions."""
    schema = _tiny_schema(with_help=True)
    assert [n.name for n in node_types(schema)] == ["message", "zeta"]
    page = node_types_page(schema)
    message = _section(page, "`message`")
    assert "Send a | message." in message
    example = json.dumps({"id": "hi", "type": "message", "text": "hi"}, indent=2)
    assert f"```json\n{example}\n```" in message
    assert '| `text` | string | no | Say it. | `"hi"` |' in message
    assert "list of [Button](../reference/flow-schema.md#def-button)" in message
    assert "[`message`](#message) | Send a \\| message. |" in page
    flow_page = flow_schema_page(schema)
    assert "### `Button` {#def-button}" in flow_page
    assert "Its `$id` is `https://example.com/flow.json`." in flow_page
    assert '```json\n{\n  "id": "tiny"\n}\n```' in _section(flow_page, "The flow")


def test_missing_descriptions_render_nothing() -> None:
    """A schema without descriptions or examples still renders: empty cells, no JSON
    block, no example column."""
    schema = _tiny_schema(with_help=False)
    page = node_types_page(schema)
    message = _section(page, "`message`")
    assert "```json" not in message
    assert "```json" not in flow_schema_page(schema)
    assert "| Property | Type | Required | Description |\n" in message
    assert "| `text` | string | no |  |" in message


# -------------------------------------------------------------------------------- the API


def test_every_route_is_on_the_api_page(generated: dict[str, str]) -> None:
    """Each path and method of the served OpenAPI document has its section, with its
    answers' status codes; the document itself is published beside it."""
    document = json.loads(generated["api/openapi.json"])
    page = generated["api/reference.md"]
    count = 0
    for method, path, operation in operations(document):
        section = _section(page, f"`{method.upper()} {path}`")
        for status in operation["responses"]:
            assert f"| `{status}` |" in section, (method, path, status)
        for parameter in operation.get("parameters", []):
            assert f"| `{parameter['name']}` |" in section, (method, path, parameter["name"])
        count += 1
    assert count == sum(len(item) for item in document["paths"].values()) > 30
    assert "/v1/executions" in document["paths"]
    assert "[openapi.json](openapi.json)" in page


def test_api_page_renders_a_body_and_groups_by_tag() -> None:
    """A request body's schema is shown by its properties; routes sit under their tag."""
    document = {
        "info": {"version": "9"},
        "paths": {
            "/things/{id}": {
                "put": {
                    "tags": ["things"],
                    "summary": "Store a thing",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        },
                    },
                    "responses": {"204": {"description": "Stored."}},
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {
                    "type": "object",
                    "properties": {"size": {"type": "integer", "description": "How | big."}},
                    "required": ["size"],
                }
            }
        },
    }
    page = api_page(document)
    assert page.index("## Things {#tag-things}") < page.index("### `PUT /things/{id}`")
    route = _section(page, "`PUT /things/{id}`")
    assert "**Store a thing**" in route
    assert "| `id` | path | string | yes |  |" in route
    assert "`application/json`: [Thing](#schema-thing)" in route
    assert "| `size` | integer | yes | How \\| big. |" in route
    assert "| `204` | Stored. |  |" in route


def test_docstring_markup_reads_as_markdown() -> None:
    """Descriptions made from docstrings keep no reStructuredText: double backticks and
    Sphinx roles become code spans."""
    assert markdown_text("See :mod:`trilha.core.answers` and ``id``.") == (
        "See `trilha.core.answers` and `id`."
    )


def test_every_link_between_the_pages_has_its_target(generated: dict[str, str]) -> None:
    """Each ``#anchor`` a generated page links to is a heading's id, on that page or on
    the generated page it names."""
    ids = {
        path: set(re.findall(r"\{#([a-z0-9-]+)\}\s*$", text, re.M))
        for path, text in generated.items()
        if path.endswith(".md")
    }
    checked = 0
    for path, text in generated.items():
        if not path.endswith(".md"):
            continue
        folder = path.rsplit("/", 1)[0]
        for target, fragment in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
            if not target:
                page = path
            elif target.startswith("../"):  # every generated page is one folder deep
                page = target.removeprefix("../")
            else:
                page = f"{folder}/{target}"
            assert fragment in ids[page], (path, target, fragment)
            checked += 1
    assert checked > 100
