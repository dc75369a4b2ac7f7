"""``reference/flow-schema.md`` and ``flows/node-types.md``, from the flow's JSON Schema
(:func:`trilha.core.flow.flow_json_schema` with every registered node type).

The pages render what the schema says: each node type's ``description`` and first
``examples`` item (a complete node), each property's ``description`` and first
``examples`` item. Where the schema has none yet, the page shows nothing there rather
than failing: the schema is the one place they are written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from trilha.reference_docs.markdown import anchor, cell, code, literal, paragraphs, table

#: the node types a flow author meets first, in the order the docs teach them; the
#: other registered types follow in the schema's order
COMMON_NODE_TYPES = ("message", "question", "condition", "set", "http", "handoff", "end")

#: where the schema file is published, relative to the docs' root
SCHEMA_FILE = "schema/flow.schema.json"

Link = Callable[[str], str]
"""A ``$defs`` name to the URL of its section (a page's own anchor, or another page's);
:data:`NODES` to the list of node types."""

#: what a :data:`Link` is given for "any node type" (the ``nodes`` union)
NODES = ""


#: a Sphinx cross-reference in a docstring-made description: :mod:`trilha.x`
_ROLE = re.compile(r":(?:mod|class|func|data|meth|attr|obj):`~?([^`]+)`")


def markdown_text(value: Any) -> str:
    """A description as Markdown: reStructuredText's double backticks become single,
    a Sphinx role its plain code span."""
    return _ROLE.sub(r"`\1`", str(value).replace("``", "`")) if value else ""


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def resolve(schema: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """``fragment`` with a local ``$ref`` (``#/$defs/X``, ``#/components/schemas/X``)
    followed once from the document ``schema``; ``{}`` for one that leads nowhere."""
    ref = fragment.get("$ref")
    if not (isinstance(ref, str) and ref.startswith("#/")):
        return fragment
    found: Any = schema
    for part in ref[2:].split("/"):
        found = (
            found.get(part.replace("~1", "/").replace("~0", "~"), {})
            if isinstance(found, dict)
            else {}
        )
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True, slots=True)
class NodeType:
    """One registered node type as the schema describes it."""

    name: str  # the value of its "type" property
    definition: str  # its $defs name, "" when inline
    schema: dict[str, Any]


def node_types(schema: dict[str, Any]) -> list[NodeType]:
    """Every node type the schema accepts in ``nodes``: the common ones first
    (:data:`COMMON_NODE_TYPES`), then the rest in the schema's order."""
    items = schema.get("properties", {}).get("nodes", {}).get("items", {})
    choices = items.get("oneOf") or items.get("anyOf") or [items]
    found: list[NodeType] = []
    for choice in choices:
        node = resolve(schema, choice)
        kind = node.get("properties", {}).get("type", {})
        name = kind.get("const") or (kind.get("enum") or [None])[0]
        if isinstance(name, str):
            found.append(NodeType(name, _ref_name(choice.get("$ref", "")), node))
    rank = {name: i for i, name in enumerate(COMMON_NODE_TYPES)}
    return sorted(found, key=lambda n: rank.get(n.name, len(rank)))


def _is_localized(fragment: dict[str, Any]) -> bool:
    """Text, or a map of language tags to texts (``Localized``)."""
    options = fragment.get("oneOf") or fragment.get("anyOf") or []
    kinds = {o.get("type") for o in options}
    return kinds == {"string", "object"} and any("patternProperties" in o for o in options)


def type_text(schema: dict[str, Any], fragment: dict[str, Any], link: Link) -> str:
    """A fragment's type in a few words (cell-safe Markdown): ``string``, ``list of
    [Button](#button)``, ``"a" | "b"``; ``null`` left out (that is what optional means)."""
    if "$ref" in fragment:
        name = _ref_name(str(fragment["$ref"]))
        return f"[{name}]({link(name)})"
    if "const" in fragment:
        return code(literal(fragment["const"]))
    if "enum" in fragment:
        return " \\| ".join(code(literal(v)) for v in fragment["enum"])
    if _is_localized(fragment):
        return "text or map of language → text"
    options = fragment.get("oneOf") or fragment.get("anyOf")
    if options:
        if "discriminator" in fragment:
            return f"[node]({link(NODES)})"
        words = [type_text(schema, o, link) for o in options if o.get("type") != "null"]
        return " or ".join(dict.fromkeys(w for w in words if w)) or "null"
    kind = fragment.get("type")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind if k != "null")
    if kind == "array":
        items = fragment.get("items")
        return f"list of {type_text(schema, items, link)}" if isinstance(items, dict) else "list"
    if kind == "object":
        values = fragment.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"map of {type_text(schema, values, link)}"
        pattern = fragment.get("patternProperties")
        if isinstance(pattern, dict) and len(pattern) == 1:
            return f"map of {type_text(schema, next(iter(pattern.values())), link)}"
        return "object"
    return str(kind) if kind else "any"


def _description(schema: dict[str, Any], fragment: dict[str, Any]) -> str:
    """The property's own description, else (for a reference) its definition's."""
    if fragment.get("description"):
        return markdown_text(fragment["description"])
    refs = [fragment, *(fragment.get("anyOf") or [])]
    for option in refs:
        if "$ref" in option:
            return markdown_text(resolve(schema, option).get("description"))
    return ""


def _example(fragment: dict[str, Any]) -> str:
    examples = fragment.get("examples")
    if isinstance(examples, list) and examples:
        return code(json.dumps(examples[0], ensure_ascii=False))
    return ""


def _required(name: str, fragment: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "yes"
    if "default" in fragment and fragment["default"] not in (None, [], {}):
        return f"no (default {code(json.dumps(fragment['default'], ensure_ascii=False))})"
    return "no"


def properties_table(schema: dict[str, Any], obj: dict[str, Any], link: Link) -> str:
    """One row per property: name, type, required (or its default), description,
    example. Empty for an object without properties."""
    props: dict[str, Any] = obj.get("properties", {})
    if not props:
        return ""
    required = set(obj.get("required", []))
    rows = [
        [
            code(name),
            type_text(schema, fragment, link),
            _required(name, fragment, required),
            cell(_description(schema, fragment)),
            _example(fragment),
        ]
        for name, fragment in props.items()
    ]
    headers = ["Property", "Type", "Required", "Description", "Example"]
    if not any(row[-1] for row in rows):  # an empty column says nothing
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    return table(headers, rows)


def _example_block(fragment: dict[str, Any]) -> str:
    """A schema's first example as a JSON block; or nothing."""
    examples = fragment.get("examples")
    if not (isinstance(examples, list) and examples):
        return ""
    text = json.dumps(examples[0], indent=2, ensure_ascii=False)
    return f"```json\n{text}\n```\n\n"


def node_example(node: NodeType) -> str:
    """The node type's first example, a complete node, as a JSON block; or nothing."""
    return _example_block(node.schema)


def _definitions(schema: dict[str, Any], nodes: list[NodeType]) -> Iterator[tuple[str, Any]]:
    """The ``$defs`` that are not node types, by name."""
    skip = {n.definition for n in nodes}
    for name, fragment in sorted(schema.get("$defs", {}).items()):
        if name not in skip and isinstance(fragment, dict):
            yield name, fragment


def def_anchor(name: str) -> str:
    return anchor("def", name)


def node_anchor(name: str) -> str:
    return anchor("node", name)


def flow_schema_page(schema: dict[str, Any]) -> str:
    """The flow format: the flow's own properties, each node type's, then the shared
    definitions they refer to."""
    nodes = node_types(schema)
    by_definition = {n.definition: n.name for n in nodes if n.definition}

    def link(name: str) -> str:
        if name == NODES:
            return "#node-types"
        if name in by_definition:
            return f"#{node_anchor(by_definition[name])}"
        return f"#{def_anchor(name)}"

    out = [
        "# Flow schema\n\n",
        "A flow is a JSON (or YAML) document. This page is generated at build time from"
        " the JSON Schema `trilha schema` prints, with every registered node type; the"
        f" schema itself is [{SCHEMA_FILE.rsplit('/', 1)[-1]}](../{SCHEMA_FILE}), for"
        " editors and CI. [Node types](../flows/node-types.md) shows each type with an"
        " example.\n\n",
        paragraphs(f"Its `$id` is `{schema['$id']}`." if schema.get("$id") else ""),
        "## The flow {#the-flow}\n\n",
        paragraphs(markdown_text(schema.get("description"))),
        _example_block(schema),
        properties_table(schema, schema, link),
        "\n## Node types {#node-types}\n\n",
        "Every node has an `id` and a `type`; the type decides the rest.\n\n",
    ]
    for node in nodes:
        out.append(f"### `{node.name}` {{#{node_anchor(node.name)}}}\n\n")
        out.append(paragraphs(markdown_text(node.schema.get("description"))))
        out.append(properties_table(schema, node.schema, link) + "\n")
    out.append("## Definitions {#definitions}\n\n")
    out.append("The objects node properties are made of.\n\n")
    for name, fragment in _definitions(schema, nodes):
        out.append(f"### `{name}` {{#{def_anchor(name)}}}\n\n")
        out.append(paragraphs(markdown_text(fragment.get("description"))))
        body = properties_table(schema, fragment, link)
        if not body:
            body = f"Type: {type_text(schema, fragment, link)}.\n"
        out.append(body + "\n")
    return "".join(out).rstrip("\n") + "\n"


def node_types_page(schema: dict[str, Any]) -> str:
    """Every node type: what it does, an example and its properties."""
    nodes = node_types(schema)
    by_definition = {n.definition: n.name for n in nodes if n.definition}

    def link(name: str) -> str:
        if name == NODES:
            return "#node-types"
        if name in by_definition:
            return f"#{anchor(by_definition[name])}"
        return f"../reference/flow-schema.md#{def_anchor(name)}"

    out = [
        "# Node types\n\n",
        "Every node type trilha has registered, generated at build time from the flow"
        " schema: what each does, an example, and its properties. The types a flow"
        " uses most come first. The whole format is in the"
        " [flow schema reference](../reference/flow-schema.md).\n\n",
    ]
    out.append(
        table(
            ["Type", "What it does"],
            [
                [
                    f"[`{n.name}`](#{anchor(n.name)})",
                    cell(markdown_text(n.schema.get("description"))),
                ]
                for n in nodes
            ],
        )
        + "\n"
    )
    for node in nodes:
        out.append(f"## `{node.name}` {{#{anchor(node.name)}}}\n\n")
        out.append(paragraphs(markdown_text(node.schema.get("description"))))
        out.append(node_example(node))
        out.append(properties_table(schema, node.schema, link) + "\n")
    return "".join(out).rstrip("\n") + "\n"
