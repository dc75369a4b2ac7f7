"""``reference/configuration.md``: every key of ``trilha.toml``, from the models that
validate it (:class:`trilha.config.Config` and the models it holds).

A key's description is its field's ``description``, so the page, the validation and
any JSON Schema of the configuration say the same thing; a key without one is a
defect :func:`config_keys` lets a test find.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from trilha.reference_docs.markdown import anchor, cell, code, literal, paragraphs, table

#: how a key's value is written: a plain value, one table, a table per name, an array of tables
Shape = Literal["value", "table", "named", "array"]


@dataclass(frozen=True, slots=True)
class Section:
    """A table of the file: its header as TOML writes it and the model of its keys."""

    header: str  # "[dependencies.NAME]", "[[triggers]]", "" for the top level
    path: str  # "dependencies.NAME", "" for the top level
    model: type[BaseModel]
    description: str | None
    depth: int = 0  # 0 the top level, 1 its tables, 2 theirs...


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of one section."""

    section: Section
    name: str
    field: FieldInfo


def _strip(annotation: Any) -> Any:
    """The annotation without ``Annotated[...]`` and without ``None`` in a union."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return _strip(rest[0])
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def shape(annotation: Any) -> tuple[Shape, type[BaseModel] | None]:
    """How a field is written in TOML, and the model of its table(s) if it is one."""
    model = _model(annotation)
    if model is not None:
        return "table", model
    stripped = _strip(annotation)
    args = get_args(stripped)
    if get_origin(stripped) is dict and len(args) == 2 and (inner := _model(args[1])):
        return "named", inner
    if get_origin(stripped) is list and args and (inner := _model(args[0])):
        return "array", inner
    return "value", None


def sections(root: type[BaseModel]) -> Iterator[Section]:
    """The top level, then every table below it, depth first in the models' field order."""

    def visit(section: Section) -> Iterator[Section]:
        yield section
        for name, field in section.model.model_fields.items():
            kind, model = shape(field.annotation)
            if model is None:
                continue
            path = f"{section.path}.{name}" if section.path else name
            if kind == "named":
                path += ".NAME"
            header = f"[[{path}]]" if kind == "array" else f"[{path}]"
            yield from visit(Section(header, path, model, field.description, section.depth + 1))

    yield from visit(Section("", "", root, None))


def config_keys(root: type[BaseModel]) -> Iterator[ConfigKey]:
    """Every key of every section (what the page lists, and what a test checks)."""
    for section in sections(root):
        for name, field in section.model.model_fields.items():
            yield ConfigKey(section, name, field)


_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_name(annotation: Any) -> str:
    """A value's type in words a TOML writer reads: ``number``, ``list of string``,
    ``"auto" | "json"``."""
    annotation = _strip(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(code(literal(a)) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[1])}" if len(args) == 2 else "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if isinstance(annotation, type):
        return _NAMES.get(annotation, annotation.__name__)
    return str(annotation)


def _bounds(field: FieldInfo) -> list[str]:
    """The field's numeric bounds and lengths, as ``> 0``, ``≤ 600``, ``at most 2``."""
    said: list[str] = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            said.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            said.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            said.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            said.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            said.append(f"length ≥ {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            said.append(f"length ≤ {item.max_length}")
    low = next((s for s in said if s.startswith("length ≥")), None)
    high = next((s for s in said if s.startswith("length ≤")), None)
    if low and high:  # one phrase for both ends
        said = [s for s in said if s not in (low, high)]
        said.append(f"length {low.split()[-1]} to {high.split()[-1]}")
    return said


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in the file; ``required`` without one."""
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is None or isinstance(value, BaseModel):
        return ""
    return code(literal(value))


def _key_type(key: ConfigKey) -> str:
    kind, model = shape(key.field.annotation)
    if model is not None:
        path = f"{key.section.path}.{key.name}" if key.section.path else key.name
        if kind == "named":
            path += ".NAME"
        header = f"[[{path}]]" if kind == "array" else f"[{path}]"
        words = {"table": "table", "named": "tables by name", "array": "array of tables"}[kind]
        return f"{words}: [{cell(code(header))}](#{anchor(path)})"
    return cell(", ".join([type_name(key.field.annotation), *_bounds(key.field)]))


def _section_text(section: Section, level: int) -> str:
    title = f"`{section.header}`" if section.header else "Top level"
    parts = [f"{'#' * level} {title} {{#{anchor(section.path or 'top-level')}}}\n\n"]
    parts.append(paragraphs(section.description))
    rows = [
        [
            code(name),
            _key_type(ConfigKey(section, name, field)),
            default_text(field),
            cell(field.description),
        ]
        for name, field in section.model.model_fields.items()
    ]
    parts.append(table(["Key", "Type", "Default", "Description"], rows))
    return "".join(parts) + "\n"


_INTRO = """\
# Configuration

`trilha serve`, `trilha worker` and the other commands read `trilha.toml` from the
working folder, or the file `--config FILE` names; without one, every key has its
default. This page is generated at build time from the models that validate the
file, so it lists every key there is.

- Keys may be written in `snake_case`, as here, or in `camelCase`.
- An unknown key is an error naming it: a typo never goes unnoticed.
- Header values and secrets may name environment variables as `${NAME}`, which keeps
  secrets out of the file; a variable that is not set is an error naming it.
- `NAME` in a header stands for a name you choose: `[dependencies.crm]`.
- A table may also be written inline: `retry = { max_attempts = 3 }`.

"""


def config_page(root: type[BaseModel]) -> str:
    """The whole page: the top-level keys, then each table under its own heading."""
    out = [_INTRO]
    for section in sections(root):
        out.append(_section_text(section, 2 if section.depth <= 1 else 3))
    return "".join(out).rstrip("\n") + "\n"
