"""``reference/cli.md``: every command of ``trilha``, from the command tree itself.

The page walks the commands typer builds from :data:`trilha.cli.app`
(``typer.main.get_command``), so a new command, option or help text appears on the
next build with nothing written by hand. Recent typer carries its own fork of Click
whose parameters differ from Click's (a ``display_type`` instead of a ``type``), so
the tree is read by the attributes both have, typed ``Any``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer

from trilha.reference_docs.markdown import anchor, cell, code, literal, paragraphs, table


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """One command of the tree, with the context its usage line is read from."""

    path: str  # "trilha keys create"
    command: Any
    context: Any


def subcommands(command: Any, context: Any) -> list[tuple[str, Any]]:
    """A group's visible commands in the order ``--help`` lists them (none for a
    command)."""
    if not hasattr(command, "list_commands"):
        return []
    found = [(name, command.get_command(context, name)) for name in command.list_commands(context)]
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def walk(root: Any, name: str = "trilha") -> Iterator[CommandEntry]:
    """The root, then every visible command and sub-command, depth first, in the order
    ``--help`` lists them."""

    def visit(command: Any, path: str, parent: Any) -> Iterator[CommandEntry]:
        context = typer.Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
        yield CommandEntry(path, command, context)
        for sub_name, sub in subcommands(command, context):
            yield from visit(sub, f"{path} {sub_name}", context)

    yield from visit(root, name, None)


def _type(param: Any, context: Any) -> str:
    """A parameter's type as ``--help`` shows it (``int``, ``path``, ``a|b``), with its
    bounds, and whether it may be given more than once."""
    if getattr(param, "is_flag", False) and not getattr(param, "count", False):
        return "flag"
    display = getattr(param, "display_type", None)  # typer's fork has it, Click a .type
    name = str(display(context)).strip("<>") if callable(display) else str(param.type.name)
    name = name.replace("Path", "path")
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        name = name.removesuffix(" range")
        name += "".join(
            [f", ≥ {low}" if low is not None else "", f", ≤ {high}" if high is not None else ""]
        )
    if getattr(param, "multiple", False):
        name = f"{name.removeprefix('list[').removesuffix(']')}, repeatable"
    elif param.nargs != 1:
        name = f"{name.removeprefix('list[').removesuffix(']')}, one or more"
    return cell(name)


def _default(param: Any) -> str:
    """The default, as the reader would type it; nothing when there is none."""
    if param.required:
        return "required"
    value = param.default
    if callable(value) or value is None or value in ((), []):
        return ""
    if getattr(param, "is_flag", False) and value is False:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(code(str(v)) for v in value)
    if isinstance(value, bool | int | float):
        return code(literal(value))
    return code(str(value))


def plain(text: str) -> str:
    """Help as the terminal shows it: ``\\[logging]`` is rich's escape of a bracket,
    which a page has no use for."""
    return text.replace("\\[", "[")


def _help(param: Any) -> str:
    text = plain(str(getattr(param, "help", None) or ""))
    envvar = param.envvar
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        extra = "Environment: " + ", ".join(f"`{n}`" for n in names) + "."
        text = f"{text} {extra}" if text else extra
    return cell(text)


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _names(param: Any) -> str:
    if _is_argument(param):
        return code(str(param.name))
    return ", ".join(code(o) for o in [*param.opts, *param.secondary_opts])


def params_table(command: Any, context: Any) -> str:
    """The arguments, then the options (``--help`` left out: every command has it)."""
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    arguments = [p for p in params if _is_argument(p)]
    options = [p for p in params if not _is_argument(p)]
    if not params:
        return ""
    rows = [[_names(p), _type(p, context), _default(p), _help(p)] for p in [*arguments, *options]]
    return table(["Name", "Type", "Default", "Description"], rows)


def _section(entry: CommandEntry, level: int) -> str:
    command = entry.command
    heading = "#" * level
    parts = [f"{heading} `{entry.path}` {{#{anchor(entry.path)}}}\n\n"]
    usage = " ".join([entry.context.command_path, *command.collect_usage_pieces(entry.context)])
    parts.append(f"```\n{usage}\n```\n\n")
    if command.deprecated:
        parts.append('!!! warning "Deprecated"\n\n    This command is deprecated.\n\n')
    parts.append(paragraphs(plain(inspect.cleandoc(command.help or ""))))
    parts.append(params_table(command, entry.context))
    subs = subcommands(command, entry.context)
    if subs:
        rows = [
            [
                f"[`{name}`](#{anchor(entry.path, name)})",
                cell(plain(sub.get_short_help_str(limit=200))),
            ]
            for name, sub in subs
        ]
        parts.append("\n" + table(["Command", "What it does"], rows))
    if command.epilog:
        parts.append("\n" + paragraphs(inspect.cleandoc(command.epilog)))
    return "".join(parts).rstrip("\n") + "\n\n"


def cli_page(root: Any, name: str = "trilha") -> str:
    """The whole page: the root command (its global options and the list of commands),
    then each command under its own heading."""
    out = [
        "# Command line\n\n",
        "Generated from `trilha`'s own command tree at build time: what each command's"
        " `--help` says, in one place. Every command also takes `--help`.\n\n",
    ]
    for entry in walk(root, name):
        depth = entry.path.count(" ")
        out.append(_section(entry, 2 if depth <= 1 else 3))
    return "".join(out).rstrip("\n") + "\n"
