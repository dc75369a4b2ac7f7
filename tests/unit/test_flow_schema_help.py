"""The flow schema as an editor reads it: every node type and every property says what
it is for and shows an example, and every example is a valid value.

The schema is published at a stable ``$id`` and kept in ``docs/schema/``; a flow file
may name it in ``"$schema"``, which trilha ignores. There is no ``jsonschema`` package
in the environment, so examples are checked through the models the schema is made
from: what the flow model accepts is what the schema describes.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from trilha.cli import app
from trilha.core.flow import (
    FLOW_SCHEMA_ID,
    Flow,
    NodeTypes,
    flow_json_schema,
    load_flow,
    parse_flow,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS_COPY = ROOT / "docs" / "schema" / "flow.schema.json"
SCHEMA = flow_json_schema()
DEFS: dict[str, Any] = SCHEMA["$defs"]
#: node type -> the name of its subschema in ``$defs``
NODE_DEFS = {
    name: ref.rsplit("/", 1)[1]
    for name, ref in SCHEMA["properties"]["nodes"]["items"]["discriminator"]["mapping"].items()
}
#: what only a developer would write: docstring markup and references to the design notes
INTERNAL = ("``", ":mod:", ":func:", ":class:", ":data:", "DESIGN", "§", "trilha.core")


def _models(root: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """Every model ``root`` is made of, ``root`` included."""
    seen: set[type[BaseModel]] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in seen:
                continue
            seen.add(item)
            yield item
            stack.extend(f.annotation for f in item.model_fields.values())
        else:
            stack.extend(typing.get_args(item))


def _model_by_def() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for model in [Flow, *NodeTypes().models.values()]:
        for part in _models(model):
            found[part.__name__] = part
    del found["Flow"]  # the root, not a def: its properties are checked on their own
    return found


MODELS = _model_by_def()


def _help_gaps(where: str, schema: Any) -> Iterator[str]:
    """The path of every property (anywhere below ``schema``) without a description or
    examples, or whose description reads like a developer's note."""
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            path = f"{where}.properties.{name}"
            description = sub.get("description")
            if not isinstance(description, str) or not description.strip():
                yield f"{path}: no description"
            elif any(mark in description for mark in INTERNAL):
                yield f"{path}: description reads like a developer's note: {description!r}"
            examples = sub.get("examples")
            if not isinstance(examples, list) or not examples:
                yield f"{path}: no examples"
        for key, value in schema.items():
            if key not in ("examples", "default", "const", "enum"):
                yield from _help_gaps(f"{where}.{key}", value)
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from _help_gaps(f"{where}[{i}]", item)


def test_published_at_a_stable_id_as_draft_2020_12() -> None:
    assert SCHEMA["$id"] == FLOW_SCHEMA_ID == "https://trilha.dev/schema/flow.schema.json"
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert list(SCHEMA)[:3] == ["$schema", "$id", "title"]
    assert SCHEMA["description"] and SCHEMA["examples"]


def test_every_node_type_and_property_has_a_description_and_examples() -> None:
    gaps = list(_help_gaps("#", {k: v for k, v in SCHEMA.items() if k != "$defs"}))
    for name, sub in DEFS.items():
        where = f"#/$defs/{name}"
        description = sub.get("description", "")
        if not description.strip():
            gaps.append(f"{where}: no description")
        elif any(mark in description for mark in INTERNAL):
            gaps.append(f"{where}: description reads like a developer's note: {description!r}")
        if not sub.get("examples"):
            gaps.append(f"{where}: no examples")
        title = sub.get("title") or ""
        if not title or re.fullmatch(r"[A-Za-z]*[a-z][A-Z][A-Za-z]*", title):  # a class name
            gaps.append(f"{where}: no title for people (shows {title!r})")
        gaps.extend(_help_gaps(where, sub))
    assert sorted(NODE_DEFS) == sorted(NodeTypes().models)
    assert not gaps, "schema help missing:\n" + "\n".join(gaps)


@pytest.mark.parametrize("node_type", sorted(NODE_DEFS))
def test_every_node_example_runs_in_a_flow(node_type: str) -> None:
    """Each example of a node type (the first a complete node) is published in a flow
    of its own, its targets pointing at ``end`` nodes, with no error."""
    model = NodeTypes().models[node_type]
    examples = DEFS[NODE_DEFS[node_type]]["examples"]
    for example in examples:
        assert example["type"] == node_type
        node = model.model_validate(example)
        targets = sorted({target for _, target in node.targets()} - {node.id})
        flow = {
            "id": "example",
            "start": node.id,
            "nodes": [example, *({"id": target, "type": "end"} for target in targets)],
        }
        parsed, problems = parse_flow(flow)
        errors = [str(p) for p in problems if p.severity == "error"]
        assert parsed is not None and not errors, f"{node_type} example {example}: {errors}"


def test_every_def_is_a_model_whose_examples_it_accepts() -> None:
    assert sorted(MODELS) == sorted(DEFS)
    for name, model in MODELS.items():
        for example in DEFS[name]["examples"]:
            model.model_validate(example)


def _property_cases() -> Iterator[tuple[str, str, Any]]:
    for name, sub in sorted(DEFS.items()):
        for prop, spec in sub["properties"].items():
            for example in spec.get("examples", ()):
                yield name, prop, example


def test_every_property_example_is_valid_for_its_property() -> None:
    """Each property's example, put in place of that property in its object's own first
    example, is accepted by the model the object's subschema is made from."""
    wrong = []
    for name, prop, example in _property_cases():
        model = MODELS[name]
        value = {**DEFS[name]["examples"][0], prop: example}
        try:
            model.model_validate(value)
        except ValidationError as exc:
            wrong.append(f"#/$defs/{name}.{prop} example {example!r}: {exc.errors()[0]['msg']}")
    assert not wrong, "\n".join(wrong)


def test_every_flow_property_example_is_valid() -> None:
    base = SCHEMA["examples"][0]
    parsed, problems = parse_flow(base)
    assert parsed is not None, problems
    for prop, spec in SCHEMA["properties"].items():
        for example in spec["examples"]:
            if prop == "nodes":
                flow, problems = parse_flow({**base, "start": example[0]["id"], "nodes": example})
                assert flow is not None, (example, problems)
            else:
                Flow.model_validate({**base, prop: example})


def test_a_flow_file_may_name_its_schema_and_trilha_ignores_it() -> None:
    flow = {
        "$schema": "../docs/schema/flow.schema.json",
        "id": "hello",
        "start": "bye",
        "nodes": [{"id": "bye", "type": "end", "text": "Hi!"}],
    }
    parsed, problems = parse_flow(flow)
    assert parsed is not None and problems == []
    assert "$schema" not in parsed.wire()
    assert parsed == load_flow({k: v for k, v in flow.items() if k != "$schema"})
    assert parsed.wire() == parse_flow({k: v for k, v in flow.items() if k != "$schema"})[0].wire()  # type: ignore[union-attr]
    # only that key: the flow model still refuses what it does not know
    parsed, problems = parse_flow({**flow, "$comment": "x"})
    assert parsed is None
    assert [str(p) for p in problems] == ["$comment: unknown field"]
    parsed, problems = parse_flow({**flow, "$schema": 42})
    assert parsed is None and [p.path for p in problems] == ["$schema"]
    # nor under its Python name, which a model would otherwise take as well
    parsed, problems = parse_flow({**flow, "schema_": "x"})
    assert parsed is None and problems, problems
    assert "did you mean $schema" in str(problems[0])


def test_docs_keep_the_schema_trilha_schema_prints() -> None:
    """docs/schema/flow.schema.json is what ``trilha schema`` prints, byte for byte."""
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["$id"] == FLOW_SCHEMA_ID
    kept = DOCS_COPY.read_text(encoding="utf-8") if DOCS_COPY.exists() else ""
    assert kept == result.stdout, (
        "docs/schema/flow.schema.json differs from `trilha schema`; refresh it with"
        " `trilha schema > docs/schema/flow.schema.json`"
    )


def test_example_flows_name_the_docs_copy_of_the_schema() -> None:
    """An example that names a schema names the copy in docs/ by a relative path (works
    offline, in any checkout), and editing it in VS Code uses that."""
    named = 0
    for path in sorted((ROOT / "examples").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "$schema" in data:
            named += 1
            assert (path.parent / data["$schema"]).resolve() == DOCS_COPY, path
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    [mapping] = [m for m in settings["json.schemas"] if "/examples/*.json" in m["fileMatch"]]
    assert (ROOT / mapping["url"]).resolve() == DOCS_COPY
    assert named == 0 or named == len(list((ROOT / "examples").glob("*.json")))


def test_third_party_node_types_keep_their_own_schema() -> None:
    """A plugin's node model joins the schema as it describes itself."""
    from typing import Literal

    from trilha.core.flow import NodeBase

    class PingNode(NodeBase):
        """Pings a host."""

        type: Literal["ping"]
        host: str

    types_ = NodeTypes()
    types_.register("ping", PingNode)
    schema = flow_json_schema(types_)
    ping = schema["$defs"]["PingNode"]
    assert ping["description"] == "Pings a host."
    assert "examples" not in ping
    assert ping["properties"]["host"] == {"title": "Host", "type": "string"}
    assert schema["$defs"]["MessageNode"] == DEFS["MessageNode"]
