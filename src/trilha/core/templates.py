"""Templates: text with ``{{ expression }}`` placeholders and Handlebars-style blocks.

A placeholder holds an expression of the safe language of
:mod:`trilha.core.expressions` (``{{ customer.name }}``, ``{{ slots[choice - 1].label }}``,
``{{ format_date(slot.start, 'dd/MM HH:mm', 'America/Sao_Paulo') }}``), so a
template can compute what a message says but can never run code: the language
has no attributes, imports or calls beyond its whitelist. Blocks repeat or choose
parts of the text::

    {{#each slots}}{{@number}}. {{this.label}}
    {{else}}No slots today.{{/each}}
    {{#if vip}}Welcome back!{{else if new}}Welcome!{{else}}Hello.{{/if}}

Inside ``{{#each}}``, ``this`` is the item (the innermost loop's, when loops
nest), ``@index`` counts from 0, ``@number`` from 1, ``@first`` and ``@last`` say
where the item stands; the flow's variables stay visible. Iterating anything but
a non-empty list renders the ``{{else}}`` part (or nothing). Whitespace is kept
exactly as written. ``\\{{`` writes a literal ``{{``.

A template is compiled once (cached by its text) into a tree of text, placeholders
and blocks, so rendering is a walk of that tree: linear in the template plus what
it writes. The scanner finds each ``{{`` and the first ``}}`` after it with plain
searches, never a backtracking pattern. Templates are checked when a flow is
published (:func:`lint_template`); at run time a part that would fail that check
(an unclosed ``{{``, a placeholder that does not parse, a stray ``{{/each}}``) is
written literally instead of failing, because a message with odd braces is better
than a stopped conversation. Errors while evaluating a placeholder
(``number('abc')``) raise :class:`~trilha.errors.ExpressionError`, as in a condition.

Bounds (DESIGN §9): what rendering writes is counted against a
:class:`~trilha.core.budget.Budget` (``[engine] max_value_bytes``) as each piece is
made, so a loop over a large list fails at the first piece past the bound, before
the text is joined; loops may run :data:`MAX_ITERATIONS` times in all per
rendering (nested loops multiply, and every iteration counts); blocks nest at most
:data:`MAX_BLOCK_DEPTH` deep. Each ends in :class:`~trilha.errors.LimitExceeded`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

from trilha.core.budget import Budget
from trilha.core.expressions import (
    LOOP_NAMES,
    Expression,
    Variable,
    compile_expression,
    truthy,
)
from trilha.core.paths import MISSING, resolve_path
from trilha.core.text import to_text
from trilha.errors import ExpressionError, LimitExceeded

__all__ = [
    "MAX_BLOCK_DEPTH",
    "MAX_ISSUES",
    "MAX_ITERATIONS",
    "TemplateIssue",
    "lint_template",
    "render",
    "render_url",
    "render_value",
    "template_expressions",
    "template_paths",
    "to_text",
]

#: loop iterations one rendering may run, all loops together
MAX_ITERATIONS: Final = 10_000
#: how deep ``{{#each}}`` and ``{{#if}}`` blocks may nest (an ``{{else if}}`` is one more)
MAX_BLOCK_DEPTH: Final = 20
#: issues :func:`lint_template` lists before summing up the rest
MAX_ISSUES: Final = 50

_BLOCKS: Final = ("each", "if")
_SHOWN_TAG: Final = 40


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """Something :func:`lint_template` found: an ``error`` refuses the flow at
    publish time, a ``warning`` is reported and allowed."""

    message: str
    severity: Literal["error", "warning"]


# ----------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Output:
    """A placeholder; ``path`` is set when the expression is a plain path (the
    common case, read without the evaluator)."""

    tag: str
    expression: Expression
    path: str | None


@dataclass(frozen=True, slots=True)
class _Block:
    kind: str  # "each" or "if"
    tag: str
    expression: Expression
    body: tuple[_Piece, ...]
    otherwise: tuple[_Piece, ...]


_Piece = _Text | _Output | _Block


@dataclass(frozen=True, slots=True)
class _Compiled:
    pieces: tuple[_Piece, ...]
    issues: tuple[TemplateIssue, ...]
    too_deep: bool

    @property
    def single(self) -> _Output | None:
        """The placeholder, when the template is exactly one and nothing else."""
        if len(self.pieces) == 1 and isinstance(self.pieces[0], _Output):
            return self.pieces[0]
        return None


# --------------------------------------------------------------------------- parser


def _shown(tag: str) -> str:
    return tag if len(tag) <= _SHOWN_TAG else tag[: _SHOWN_TAG - 5] + "...}}"


@dataclass(slots=True)
class _Frame:
    """A block being read: its pieces so far, and where it started (so a block
    that cannot be used is written literally from there)."""

    kind: str  # "root", "each" or "if"
    start: int
    tag: str
    expression: Expression | None
    chained: bool = False  # an ``{{else if}}``: its ``{{/if}}`` also closes the block before
    body: list[_Piece] = field(default_factory=list)
    otherwise: list[_Piece] | None = None
    # text not yet made a piece: joined once, so a run of texts costs its length
    pending: list[str] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        if text:
            self.pending.append(text)

    def add(self, piece: _Piece) -> None:
        self.flush()
        (self.body if self.otherwise is None else self.otherwise).append(piece)

    def flush(self) -> None:
        if self.pending:
            text = "".join(self.pending)
            self.pending.clear()
            (self.body if self.otherwise is None else self.otherwise).append(_Text(text))


class _Parser:
    """One pass over the template: plain searches for ``{{`` and ``}}``, a stack of
    open blocks, and an issue for every part that will be written literally."""

    def __init__(self, template: str, *, in_loop: bool = False) -> None:
        self._template = template
        self._base_loops = 1 if in_loop else 0
        self._stack = [_Frame("root", 0, "", None)]
        self._issues: list[TemplateIssue] = []
        self._unshown: dict[str, int] = {}  # severity -> issues past MAX_ISSUES
        self._too_deep = False  # a block deeper than the bound is in the tree
        self._depth_reported = False
        self._loops = self._base_loops  # open {{#each}} bodies (not their {{else}} parts)

    def parse(self) -> _Compiled:
        template = self._template
        position = 0
        while True:
            opening = template.find("{{", position)
            if opening < 0:
                self._text(template[position:])
                break
            if opening > 0 and template[opening - 1] == "\\":
                self._text(template[position : opening - 1] + "{{")
                position = opening + 2
                continue
            closing = template.find("}}", opening + 2)
            if closing < 0:
                self._error(f"'{{{{' at character {opening + 1} is not closed by '}}}}'")
                self._text(template[position:])
                break
            start = template.rfind("{{", opening, closing)  # the last opening before it
            if template[opening:start].strip("{"):
                self._error(f"'{{{{' at character {opening + 1} is not closed by '}}}}'")
            self._text(template[position:start])
            position = closing + 2
            self._tag(template[start + 2 : closing], template[start:position], start, position)
        self._unclosed()
        root = self._stack[0]
        root.flush()
        if self._unshown:
            severity: Literal["error", "warning"] = (
                "error" if "error" in self._unshown else "warning"
            )
            more = sum(self._unshown.values())
            self._issues.append(TemplateIssue(f"... and {more} more issues", severity))
        return _Compiled(tuple(root.body), tuple(self._issues), self._too_deep)

    # -- helpers

    def _issue(self, message: str, severity: Literal["error", "warning"]) -> None:
        if len(self._issues) < MAX_ISSUES:
            self._issues.append(TemplateIssue(message, severity))
        else:
            self._unshown[severity] = self._unshown.get(severity, 0) + 1

    def _error(self, message: str) -> None:
        self._issue(message, "error")

    def _text(self, text: str) -> None:
        self._stack[-1].add_text(text)

    def _push(self, frame: _Frame) -> None:
        self._stack.append(frame)
        if frame.kind == "each":
            self._loops += 1

    def _pop(self) -> _Frame:
        frame = self._stack.pop()
        frame.flush()
        if frame.kind == "each" and frame.otherwise is None:
            self._loops -= 1
        return frame

    def _compile(self, source: str, tag: str, offset: int) -> Expression | None:
        where = f"{_shown(tag)} at character {offset + 1}"
        try:
            expression = compile_expression(source)
        except ExpressionError as exc:
            self._error(f"{where}: {exc}")
            return None
        for path in expression.ordered_paths():
            root = path.split(".", 1)[0]
            if (root in LOOP_NAMES or root == "this") and not self._loops:
                self._issue(
                    f"{where} reads {root!r} where no {{{{#each}}}} item is set (it is null there)",
                    "warning",
                )
        return expression

    # -- tags

    def _tag(self, content: str, tag: str, start: int, end: int) -> None:
        stripped = content.strip()
        if stripped.startswith("#"):
            self._open(stripped[1:], tag, start)
        elif stripped.startswith("/"):
            self._close(stripped[1:].strip(), tag, start, end)
        elif stripped == "else" or _is_else_if(stripped):
            self._else(stripped, tag, start)
        else:
            expression = self._compile(stripped, tag, start)
            if expression is None:
                self._text(tag)
                return
            root = expression.root
            path = root.path if isinstance(root, Variable) else None
            self._stack[-1].add(_Output(tag, expression, path))

    def _open(self, rest: str, tag: str, start: int, *, chained: bool = False) -> None:
        words = rest.split(None, 1)
        kind = words[0] if words else ""
        if kind not in _BLOCKS:
            self._error(
                f"unknown block {_shown(tag)} at character {start + 1}; use {{{{#each}}}} or"
                " {{#if}}"
            )
            self._text(tag)
            return
        source = words[1] if len(words) > 1 else ""
        if not source.strip():
            self._error(f"{_shown(tag)} at character {start + 1} needs an expression")
            expression = None
        else:
            expression = self._compile(source, tag, start)
        if len(self._stack) > MAX_BLOCK_DEPTH and not self._depth_reported:
            self._depth_reported = True
            self._error(
                f"{_shown(tag)} at character {start + 1} nests blocks deeper than"
                f" {MAX_BLOCK_DEPTH} levels"
            )
        self._push(_Frame(kind, start, tag, expression, chained=chained))

    def _else(self, stripped: str, tag: str, start: int) -> None:
        frame = self._stack[-1]
        if frame.kind == "root":
            self._error(
                f"{_shown(tag)} at character {start + 1} is outside {{{{#each}}}} or {{{{#if}}}}"
            )
            self._text(tag)
            return
        if frame.otherwise is not None:
            self._error(
                f"{_shown(tag)} at character {start + 1} is a second {{{{else}}}}"
                f" in {_shown(frame.tag)}"
            )
            self._text(tag)
            return
        chained = stripped != "else"
        if chained and frame.kind != "if":
            self._error(f"{_shown(tag)} at character {start + 1} can only follow {{{{#if}}}}")
            self._text(tag)
            return
        frame.flush()
        if frame.kind == "each":
            self._loops -= 1  # an {{#each}}'s {{else}} part runs when there is no item
        frame.otherwise = []
        if chained:
            self._open(stripped[len("else") :].strip(), tag, start, chained=True)

    def _close(self, kind: str, tag: str, start: int, end: int) -> None:
        frame = self._stack[-1]
        if frame.kind == "root":
            self._error(f"{_shown(tag)} at character {start + 1} closes no block")
            self._text(tag)
            return
        if kind != frame.kind:
            self._error(
                f"{_shown(tag)} at character {start + 1} does not close {_shown(frame.tag)}"
                f" (at character {frame.start + 1}); close it with {{{{/{frame.kind}}}}}"
            )
            self._text(tag)
            return
        while True:
            frame = self._pop()
            parent = self._stack[-1]
            if frame.expression is None:
                parent.add_text(self._template[frame.start : end])
            else:
                self._too_deep |= len(self._stack) > MAX_BLOCK_DEPTH
                otherwise = tuple(frame.otherwise or ())
                parent.add(
                    _Block(frame.kind, frame.tag, frame.expression, tuple(frame.body), otherwise)
                )
            if not frame.chained:
                return

    def _unclosed(self) -> None:
        """Blocks still open at the end: an error each, and the text from the outermost
        one on is written as it is."""
        if len(self._stack) == 1:
            return
        for frame in reversed(self._stack[1:]):
            if not frame.chained:
                self._error(
                    f"{_shown(frame.tag)} at character {frame.start + 1} is not closed by"
                    f" {{{{/{frame.kind}}}}}"
                )
        outermost = self._stack[1]
        del self._stack[1:]
        self._loops = self._base_loops
        self._text(self._template[outermost.start :])


def _is_else_if(stripped: str) -> bool:
    rest = stripped[len("else") :]
    return stripped.startswith("else") and rest[:1].isspace() and rest.split(None, 1)[0] == "if"


@functools.lru_cache(maxsize=1024)
def _compile(template: str, in_loop: bool = False) -> _Compiled:
    """Parse once: flows render the same few texts over and over. ``in_loop`` only
    changes the lint warnings (the pieces are the same)."""
    return _Parser(template, in_loop=in_loop).parse()


# ------------------------------------------------------------------------ rendering


class _Scope(Mapping[str, Any]):
    """The variables inside a loop: ``this`` and the ``@`` names over the flow's."""

    __slots__ = ("local", "outer")

    def __init__(self, local: dict[str, Any], outer: Mapping[str, Any]) -> None:
        self.local = local
        self.outer = outer

    def __getitem__(self, key: str) -> Any:
        if key in self.local:
            return self.local[key]
        return self.outer[key]

    def __contains__(self, key: object) -> bool:
        return key in self.local or key in self.outer

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.outer, *self.local]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self.outer, *self.local]))


class _Renderer:
    """One rendering (of a text, or of every string of a request body): the budget
    its pieces share, the loops it has run, and how a placeholder's text is written."""

    __slots__ = ("budget", "encode", "iterations")

    def __init__(self, budget: Budget, encode: Callable[[str], str] | None = None) -> None:
        self.budget = budget
        self.encode = encode
        self.iterations = 0

    def text(self, compiled: _Compiled, variables: Mapping[str, Any]) -> str:
        if compiled.too_deep:
            raise LimitExceeded(f"the template nests blocks deeper than {MAX_BLOCK_DEPTH} levels")
        out: list[str] = []
        try:
            self._pieces(compiled.pieces, variables, out)
        except RecursionError as exc:  # pathologically nested variable data
            raise ExpressionError("a value is nested too deeply to render") from exc
        return "".join(out)

    def value(self, output: _Output, variables: Mapping[str, Any]) -> Any:
        """A placeholder's value, ``None`` when missing."""
        if output.path is not None:
            value = resolve_path(variables, output.path)
            return None if value is MISSING else value
        return self._evaluate(output.tag, output.expression, variables)

    def _evaluate(self, tag: str, expression: Expression, variables: Mapping[str, Any]) -> Any:
        try:
            return expression.evaluate(variables, self.budget)
        except ExpressionError as exc:
            raise ExpressionError(f"in {_shown(tag)}: {exc}", **exc.details) from exc

    def _write(self, value: Any, out: list[str]) -> None:
        """Count a value's text before making it (its JSON size is a lower bound,
        walked only up to the limit), then count what the text has beyond that."""
        estimate = self.budget.size_of(value)
        self.budget.spend(estimate)
        text = to_text(value)
        if self.encode is not None:
            text = self.encode(text)
        if len(text) > estimate:
            self.budget.spend(len(text) - estimate)
        out.append(text)

    def _pieces(
        self, pieces: tuple[_Piece, ...], variables: Mapping[str, Any], out: list[str]
    ) -> None:
        for piece in pieces:
            if isinstance(piece, _Text):
                self.budget.spend(len(piece.text))
                out.append(piece.text)
            elif isinstance(piece, _Output):
                self._write(self.value(piece, variables), out)
            elif piece.kind == "each":
                self._each(piece, variables, out)
            elif truthy(self._evaluate(piece.tag, piece.expression, variables)):
                self._pieces(piece.body, variables, out)
            else:
                self._pieces(piece.otherwise, variables, out)

    def _each(self, block: _Block, variables: Mapping[str, Any], out: list[str]) -> None:
        items = self._evaluate(block.tag, block.expression, variables)
        if not isinstance(items, list | tuple) or not items:
            self._pieces(block.otherwise, variables, out)
            return
        # every loop sets the same names, so an inner loop's hide the outer one's
        outer = variables.outer if isinstance(variables, _Scope) else variables
        last = len(items) - 1
        for index, item in enumerate(items):
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise LimitExceeded(
                    f"the template's loops ran more than {MAX_ITERATIONS} times",
                    limit=MAX_ITERATIONS,
                )
            local = {
                "this": item,
                "@index": index,
                "@number": index + 1,
                "@first": index == 0,
                "@last": index == last,
            }
            self._pieces(block.body, _Scope(local, outer), out)


# ------------------------------------------------------------------------------ API


def render(template: str, variables: Mapping[str, Any], budget: Budget | None = None) -> str:
    """The text of ``template`` for these variables.

    A missing variable renders as the empty string instead of failing, because
    a message with a blank is better than a conversation that stops.
    """
    budget = budget or Budget()
    if "{{" not in template:
        budget.spend(len(template))
        return template
    return _Renderer(budget).text(_compile(template), variables)


def render_value(value: Any, variables: Mapping[str, Any], budget: Budget | None = None) -> Any:
    """Render every string inside a JSON-like ``value`` (dict values, list items).

    A string that is exactly one placeholder, such as ``"{{customer}}"`` or
    ``"{{ slots[0] }}"``, yields the raw value so that numbers, booleans and
    objects keep their type in a JSON body (``None`` when missing); the value is
    shared, not copied. Dict keys are not rendered: they are the shape of the
    request, which the flow author fixed, not data. The whole value shares
    ``budget`` and the loop bound: a shared reference counts as often as it appears.
    """
    return _render_value(value, variables, _Renderer(budget or Budget()))


def _render_value(value: Any, variables: Mapping[str, Any], renderer: _Renderer) -> Any:
    if isinstance(value, str):
        if "{{" not in value:
            renderer.budget.spend(len(value))
            return value
        compiled = _compile(value)
        single = compiled.single
        if single is not None:
            raw = renderer.value(single, variables)
            renderer.budget.spend(renderer.budget.size_of(raw))
            return raw
        return renderer.text(compiled, variables)
    if isinstance(value, dict):
        return {key: _render_value(item, variables, renderer) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(item, variables, renderer) for item in value]
    return value


def render_url(template: str, variables: Mapping[str, Any], budget: Budget | None = None) -> str:
    """Render a URL template, percent-encoding each placeholder's text as one URL
    component.

    Text a contact typed must not add query parameters or path segments
    (``&``, ``=``, ``?``, ``#``, ``/``, ``..``) to a call into the institution's
    systems. A template that is exactly one placeholder is the author's whole
    URL and is left as is.
    """
    budget = budget or Budget()
    if "{{" not in template:
        return template
    if _compile(template.strip()).single is not None:
        return render(template, variables, budget)
    return _Renderer(budget, _quote_component).text(_compile(template), variables)


def _quote_component(text: str) -> str:
    return quote(text, safe="")


def template_paths(template: str, *, in_loop: bool = False) -> list[str]:
    """List the variable paths ``template`` reads, so a flow can be checked at load time.

    Each path appears once, in order of first use, which keeps validation
    messages stable and short. Names a loop sets (``this`` inside ``{{#each}}``,
    ``@index`` and friends) are not variables of the flow and are left out;
    ``in_loop`` reads the whole template as a loop's body (a ``rowsFrom`` field,
    rendered once per item), where ``this`` is always the item.
    """
    if "{{" not in template:
        return []
    return list(dict.fromkeys(_paths(_compile(template).pieces, in_loop=in_loop)))


def _paths(pieces: tuple[_Piece, ...], *, in_loop: bool) -> Iterator[str]:
    """Paths in reading order, walked with a stack of its own: a template that nests
    too deep to render is still listed (and refused by lint)."""
    stack: list[tuple[Iterator[_Piece], bool]] = [(iter(pieces), in_loop)]
    while stack:
        iterator, in_loop = stack[-1]
        piece = next(iterator, None)
        if piece is None:
            stack.pop()
            continue
        if isinstance(piece, _Text):
            continue
        for path in piece.expression.ordered_paths():
            root = path.split(".", 1)[0]
            if root not in LOOP_NAMES and not (in_loop and root == "this"):
                yield path
        if isinstance(piece, _Block):
            stack.append((iter(piece.otherwise), in_loop))
            stack.append((iter(piece.body), in_loop or piece.kind == "each"))


def template_expressions(template: str) -> list[Expression]:
    """Every expression ``template``'s placeholders and blocks evaluate, in reading
    order, so publishing can tell what a flow calls (the calendars it names)."""
    if "{{" not in template:
        return []
    found: list[Expression] = []
    stack: list[_Piece] = list(reversed(_compile(template).pieces))
    while stack:
        piece = stack.pop()
        if isinstance(piece, _Text):
            continue
        found.append(piece.expression)
        if isinstance(piece, _Block):
            stack.extend(reversed((*piece.body, *piece.otherwise)))
    return found


def lint_template(template: str, *, in_loop: bool = False) -> list[TemplateIssue]:
    """What would keep ``template`` from rendering as written, for publish time.

    Errors: an unclosed ``{{``; a block left open, closed by the wrong tag, or a
    stray ``{{/each}}``, ``{{/if}}`` or ``{{else}}``; a placeholder or block whose
    expression does not parse (an unknown function among them); blocks nested too
    deep. Warnings: a loop variable read outside ``{{#each}}`` (``in_loop`` reads
    the whole template as a loop's body, as a ``rowsFrom`` field is). A lone ``{``
    or ``}`` in chat text is fine.
    """
    if "{{" not in template:
        return []
    return list(_compile(template, in_loop).issues)
