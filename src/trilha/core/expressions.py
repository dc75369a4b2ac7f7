"""The safe expression language of flow conditions.

Conditions are written by flow authors but evaluated against variables that
end users and remote services filled in, inside a long-running worker. Python's
``eval`` (even with emptied builtins) can be escaped through dunder attributes,
so this module has its own small language: a hand-written tokenizer, a
recursive-descent parser that builds a tree of frozen dataclasses, and an
evaluator that only knows the operations listed below. Nothing here reaches
Python attributes, imports or arbitrary callables; the only ways into data are
a dotted path resolved by :func:`trilha.core.paths.resolve_path` and indexing
(``slots[choice - 1].label``), and both only look into dicts and lists.

Grammar, loosest binding first::

    or      := and (("or" | "||") and)*
    and     := not (("and" | "&&") not)*
    not     := ("not" | "!") not | compare
    compare := sum [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum]
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | postfix
    postfix := primary ("[" or "]" | "." field ("." field)*)*
    primary := number | string | true | false | null | path | @name | name "(" args ")"
             | "(" or ")" | "[" [or ("," or)* [","]] "]"

A ``.field`` step follows a ``]`` or ``)`` directly (``slots[0].label``); after a
name the dots are part of the path. ``@index``, ``@number``, ``@first`` and
``@last`` are the loop variables of a template's ``{{#each}}`` (null elsewhere).

``!`` is an alias of ``not`` and binds like it (``!a == b`` is
``not (a == b)``). Comparisons do not chain: ``1 < x < 3`` is refused rather
than silently meaning something a reader did not expect.

Semantics chosen so a condition cannot crash a conversation by accident:

* A variable that is not set evaluates to ``None``.
* ``==`` compares values: ``1 == 1.0`` holds, but booleans and numbers are
  different types, so ``true == 1`` does not.
* Only two numbers or two strings are ordered. Ordering comparisons (``<``
  and friends) between values of different types, or with ``None``, or of
  booleans or lists, evaluate to ``False`` instead of raising; membership tests
  (``in``, ``contains``, ``startswith``) on a missing or unsuitable container
  are also ``False``. A branch such as ``age >= 18`` simply falls through to
  the next one when ``age`` was never asked. The flip side: ``not (age >= 18)``
  is ``True`` for a missing age.
* Transformations keep absence visible: ``lower``, ``upper``, ``trim`` and
  ``number`` return ``None`` for ``None``, ``len(None)`` is ``0`` and
  ``text(None)`` is ``""``.
* ``+`` adds numbers or joins two strings; ``/`` always divides exactly
  (``7 / 2`` is ``3.5``), as a flow author who is not a programmer expects.
* Indexing takes a list item by a whole number from 0 or an object's value by a
  text key; an index out of range (negative ones included: there is no counting
  from the end), a key of the wrong type or a value that is neither list nor
  object gives ``None``.
* Dates (``now()``, ``today``, ``format_date``, ``add_days``, ``add_minutes``,
  ``weekday``; :mod:`trilha.core.dates`) never read the clock: "now" is the
  ``sys.now`` the engine puts into the variables, so a replayed step computes the
  same dates. ``now()`` without ``sys.now`` is an error; a ``null`` date gives
  ``null``.
* Business hours (``is_open("clinic")``, ``next_open("clinic")``;
  :mod:`trilha.core.calendars`) read the institution's calendars from
  ``sys.calendars``, which the engine fills for flows that name a calendar, and the
  time from ``sys.now`` unless given one. A calendar name written as a constant is
  checked when the expression is parsed; an unknown calendar is an error naming it.
* Genuine mistakes raise :class:`~trilha.errors.ExpressionError`: arithmetic
  on the wrong types, division by zero, ``number('abc')``, unknown functions.

Limits bound the cost of a hostile or runaway expression: the source may be at
most :data:`MAX_SOURCE_LENGTH` characters and nest at most :data:`MAX_DEPTH`
levels; integers are 64-bit (a literal beyond is refused when the flow is
published, a result beyond when it is computed); and no operation may build a
string or list larger than the evaluation's :class:`~trilha.core.budget.Budget`
(``[engine] max_value_bytes``), checked before the value is built, so a list of
a thousand references to one large string is refused rather than grown. Passing a
bound raises :class:`~trilha.errors.LimitExceeded` (``kind: limit``).
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from trilha.core import calendars, dates
from trilha.core.budget import INT_MAX, Budget, check_int
from trilha.core.paths import MISSING, resolve_path
from trilha.core.text import to_text
from trilha.errors import ExpressionError, LimitExceeded

__all__ = [
    "CALENDAR_FUNCTIONS",
    "FUNCTION_NAMES",
    "LOOP_NAMES",
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "Expression",
    "calendar_names",
    "compile_expression",
    "evaluate",
    "truthy",
]

MAX_SOURCE_LENGTH: Final = 2_000
MAX_DEPTH: Final = 50
#: the variables a template's ``{{#each}}`` sets for each item, beside ``this``
LOOP_NAMES: Final = frozenset({"@index", "@number", "@first", "@last"})


# --------------------------------------------------------------------------- values


def truthy(value: Any) -> bool:
    """Decide whether a condition value counts as true.

    The rules are the ones a flow author expects from JSON data (empty text,
    lists and objects, zero and ``null`` are false). Values of other Python
    types are true without asking them, so evaluating never runs their code.
    """
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python but a different type in this language.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    # Error messages speak the flow author's (JSON) vocabulary, not Python's.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _error(message: str, column: int) -> ExpressionError:
    return ExpressionError(f"{message} at column {column}", column=column)


def _fail(message: str, column: int) -> NoReturn:
    raise _error(message, column)


def _checked(value: Any) -> Any:
    """An integer result must fit in 64 bits; other results pass as they are."""
    if isinstance(value, int) and not isinstance(value, bool):
        check_int(value, "the result")
    return value


def _equal(left: Any, right: Any) -> bool:
    """Compare like JSON values do, where ``true`` and ``1`` are different things."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if left is None or right is None:
        return left is right
    return type(left) is type(right) and bool(left == right)


def _ordered(operator: str, left: Any, right: Any) -> bool:
    """Order two numbers or two strings; anything else is simply not ordered."""
    if not (
        (_is_number(left) and _is_number(right))
        or (isinstance(left, str) and isinstance(right, str))
    ):
        return False
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    if operator == ">":
        return bool(left > right)
    return bool(left >= right)


def _contains(haystack: Any, needle: Any) -> bool:
    """Membership in a string, a list or an object's keys; ``False`` for anything else."""
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle in haystack
    if isinstance(haystack, list | tuple):
        return any(_equal(item, needle) for item in haystack)
    if isinstance(haystack, dict):
        if isinstance(needle, str):
            return needle in haystack
        return any(_equal(key, needle) for key in haystack)
    return False


def _arithmetic(operator: str, left: Any, right: Any, column: int, budget: Budget) -> Any:
    if isinstance(left, str) and isinstance(right, str) and operator == "+":
        budget.check(len(left) + len(right) + 2)  # before the join is built
        return left + right
    if not (_is_number(left) and _is_number(right)):
        _fail(
            f"cannot apply {operator!r} to {_type_name(left)} and {_type_name(right)}",
            column,
        )
    if operator in "/%" and right == 0:
        _fail("division by zero", column)
    try:
        if operator == "+":
            result = left + right
        elif operator == "-":
            result = left - right
        elif operator == "*":
            result = left * right
        elif operator == "/":
            result = left / right
        else:
            result = left % right
    except OverflowError:
        _fail("number is too large", column)
    if isinstance(result, float) and not math.isfinite(result):
        _fail("number is too large", column)
    return _checked(result)


# ------------------------------------------------------------------------ functions

_INTEGER_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _len(column: int, budget: Budget, value: Any) -> Any:
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    _fail(f"len() expects a string, list or object, got {_type_name(value)}", column)


def _string_function(
    name: str, operation: Callable[[str], str]
) -> Callable[[int, Budget, Any], Any]:
    def apply(column: int, budget: Budget, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            _fail(f"{name}() expects a string, got {_type_name(value)}", column)
        # the input is a value already kept, and case changes grow a text at most 3x
        result = operation(value)
        budget.check(len(result) + 2)
        return result

    return apply


def _number(column: int, budget: Budget, value: Any) -> Any:
    if value is None or _is_number(value):
        return value
    if not isinstance(value, str):
        _fail(f"number() expects a string or number, got {_type_name(value)}", column)
    text = value.strip()
    # Only plain ASCII notation: int() and float() would also accept "1_000",
    # "nan", "inf" and non-ASCII digits, none of which a user means as a number.
    if _INTEGER_TEXT.fullmatch(text):
        if len(text.lstrip("+-").lstrip("0")) > len(str(INT_MAX)):  # never convert it
            raise LimitExceeded("number()'s result does not fit in 64 bits")
        return check_int(int(text), "number()'s result")
    if _DECIMAL_TEXT.fullmatch(text):
        result = float(text)
        if math.isfinite(result):
            return result
    shown = value if len(value) <= 40 else value[:37] + "..."
    _fail(f"number() cannot convert {shown!r}", column)


def _text(column: int, budget: Budget, value: Any) -> Any:
    budget.size_of(value)  # the text is about as large as the value's JSON
    result = to_text(value)
    budget.check(len(result) + 2)
    return result


def _contains_function(column: int, budget: Budget, haystack: Any, needle: Any) -> Any:
    return _contains(haystack, needle)


def _startswith(column: int, budget: Budget, value: Any, prefix: Any) -> Any:
    return isinstance(value, str) and isinstance(prefix, str) and value.startswith(prefix)


def _join(column: int, budget: Budget, items: Any, separator: Any = ", ") -> Any:
    if items is None:
        return ""
    if not isinstance(items, list | tuple):
        _fail(f"join() expects a list, got {_type_name(items)}", column)
    if not isinstance(separator, str):
        _fail(f"join() expects a text separator, got {_type_name(separator)}", column)
    budget.size_of(items)  # the texts are about as large as the items' JSON
    pieces: list[str] = []
    size = 2
    for item in items:
        piece = to_text(item)
        size = budget.check(size + len(piece) + len(separator))  # before the join is built
        pieces.append(piece)
    return separator.join(pieces)


def _sys_now(name: str, column: int, variables: Mapping[str, Any]) -> str:
    now = resolve_path(variables, "sys.now")
    if not isinstance(now, str):
        _fail(
            f"{name}() needs sys.now, the time the engine runs the step at, and it is not set",
            column,
        )
    return now


def _now(column: int, budget: Budget, variables: Mapping[str, Any]) -> Any:
    return _sys_now("now", column, variables)


def _today(column: int, budget: Budget, variables: Mapping[str, Any], tz: Any = None) -> Any:
    now = _sys_now("today", column, variables)
    try:
        return dates.today(now, tz)
    except dates.DateError as exc:
        _fail(f"today(): {exc}", column)


def _date_function(name: str, operation: Callable[..., Any]) -> Callable[..., Any]:
    """A function of a date and more: ``null`` for a ``null`` date (absence stays
    visible, as with ``lower``), and a :class:`~trilha.core.dates.DateError` becomes
    an :class:`ExpressionError` naming the function."""

    def apply(column: int, budget: Budget, value: Any, *rest: Any) -> Any:
        if value is None:
            return None
        try:
            return operation(value, *rest)
        except dates.DateError as exc:
            _fail(f"{name}(): {exc}", column)

    return apply


def _shift(unit: str) -> Callable[[Any, Any], str]:
    def shift(value: Any, amount: Any) -> str:
        if not _is_number(amount):
            raise dates.DateError(f"expects a number of {unit}, got {_type_name(amount)}")
        return dates.add(value, **{unit: amount})

    return shift


#: the functions whose first argument names one of the institution's calendars
CALENDAR_FUNCTIONS: Final = frozenset({"is_open", "next_open"})
#: an argument left out (``null`` given is not the same: it gives ``null``)
_OMITTED: Final = object()


def _calendar(name: str, column: int, variables: Mapping[str, Any], which: Any) -> Any:
    """The calendar called ``which`` among ``sys.calendars`` (the running institution's)."""
    if not isinstance(which, str):
        _fail(f"{name}() expects a calendar's name, got {_type_name(which)}", column)
    known = resolve_path(variables, "sys.calendars")
    wire = known.get(which) if isinstance(known, dict) else None
    if wire is None:
        shown = which if len(which) <= 64 else which[:61] + "..."
        _fail(f"{name}(): unknown calendar {shown!r}", column)
    try:
        return calendars.calendar_from_wire(wire)
    except calendars.CalendarError as exc:
        _fail(f"{name}(): calendar {which!r} cannot be used: {exc}", column)


def _calendar_moment(
    name: str, column: int, variables: Mapping[str, Any], calendar: Any, at: Any
) -> Any:
    """The instant asked about: ``at`` (a date or a wall-clock time is the calendar's
    own), else ``sys.now``."""
    try:
        moment = dates.parse(_sys_now(name, column, variables) if at is _OMITTED else at)
        return calendars.local_moment(calendar, moment)
    except dates.DateError as exc:
        _fail(f"{name}(): {exc}", column)


def _is_open(
    column: int, budget: Budget, variables: Mapping[str, Any], which: Any, at: Any = _OMITTED
) -> Any:
    calendar = _calendar("is_open", column, variables, which)
    if at is None:
        return None
    moment = _calendar_moment("is_open", column, variables, calendar, at)
    try:
        return calendars.is_open(calendar, moment)
    except calendars.CalendarError as exc:
        _fail(f"is_open(): {exc}", column)


def _next_open(
    column: int, budget: Budget, variables: Mapping[str, Any], which: Any, at: Any = _OMITTED
) -> Any:
    calendar = _calendar("next_open", column, variables, which)
    if at is None:
        return None
    moment = _calendar_moment("next_open", column, variables, calendar, at)
    try:
        found = calendars.next_open(calendar, moment)
    except calendars.CalendarError as exc:
        _fail(f"next_open(): {exc}", column)
    return None if found is None else dates.iso(found)


@dataclass(frozen=True, slots=True)
class _Function:
    """A whitelisted function: how many arguments it takes, and its implementation,
    called with the column and the budget first (and the variables, for the few
    that read ``sys``)."""

    minimum: int
    maximum: int
    implementation: Callable[..., Any]
    reads_variables: bool = False


_FUNCTIONS: Final[Mapping[str, _Function]] = {
    "len": _Function(1, 1, _len),
    "lower": _Function(1, 1, _string_function("lower", str.lower)),
    "upper": _Function(1, 1, _string_function("upper", str.upper)),
    "trim": _Function(1, 1, _string_function("trim", str.strip)),
    "number": _Function(1, 1, _number),
    "text": _Function(1, 1, _text),
    "contains": _Function(2, 2, _contains_function),
    "startswith": _Function(2, 2, _startswith),
    "join": _Function(1, 2, _join),
    "now": _Function(0, 0, _now, reads_variables=True),
    "today": _Function(0, 1, _today, reads_variables=True),
    "format_date": _Function(2, 4, _date_function("format_date", dates.format_date)),
    "add_days": _Function(2, 2, _date_function("add_days", _shift("days"))),
    "add_minutes": _Function(2, 2, _date_function("add_minutes", _shift("minutes"))),
    "weekday": _Function(1, 2, _date_function("weekday", dates.weekday)),
    "is_open": _Function(1, 2, _is_open, reads_variables=True),
    "next_open": _Function(1, 2, _next_open, reads_variables=True),
}

#: the functions expressions and templates may call
FUNCTION_NAMES: Final = frozenset(_FUNCTIONS)


# ----------------------------------------------------------------------------- tree


class Node:
    """A node of the syntax tree; each kind knows how to evaluate itself."""

    __slots__ = ()

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        """Compute this node's value from the conversation variables."""
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        """The direct subexpressions, so analyses can walk the tree."""
        return ()


@dataclass(frozen=True, slots=True)
class Constant(Node):
    """A literal number, string, boolean or null."""

    value: Any

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class Variable(Node):
    """A dotted path into the variables; absent means ``None``."""

    path: str

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        value = resolve_path(variables, self.path)
        return None if value is MISSING else value


@dataclass(frozen=True, slots=True)
class ListDisplay(Node):
    """A list literal; a fresh list each time, since compiled trees are shared.

    Its size is counted item by item as it is built: references are cheap to hold
    but each one is serialised in full, so ``[s, s, s, ...]`` is as large as its
    copies."""

    items: tuple[Node, ...]

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        values = []
        size = 1
        for item in self.items:
            value = item.evaluate(variables, budget)
            size = budget.check(size + 1 + budget.size_of(value))
            values.append(value)
        return budget.built(values, size)

    def children(self) -> tuple[Node, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class Not(Node):
    """Logical negation by :func:`truthy`."""

    operand: Node

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        return not truthy(self.operand.evaluate(variables, budget))

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Negate(Node):
    """Unary minus, for numbers only."""

    operand: Node
    column: int

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        value = self.operand.evaluate(variables, budget)
        if not _is_number(value):
            _fail(f"cannot negate {_type_name(value)}", self.column)
        return _checked(-value)

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class BoolOp(Node):
    """A chain of ``and`` or ``or``, kept flat so long chains do not deepen the tree."""

    operator: str
    operands: tuple[Node, ...]

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        # Short-circuits, and always yields a boolean rather than an operand.
        stop_on = self.operator == "or"
        for operand in self.operands:
            if truthy(operand.evaluate(variables, budget)) is stop_on:
                return stop_on
        return not stop_on

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """One comparison or membership test; chains are refused by the parser."""

    operator: str
    left: Node
    right: Node

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        left = self.left.evaluate(variables, budget)
        right = self.right.evaluate(variables, budget)
        if self.operator == "==":
            return _equal(left, right)
        if self.operator == "!=":
            return not _equal(left, right)
        if self.operator == "in":
            return _contains(right, left)
        if self.operator == "not in":
            return not _contains(right, left)
        return _ordered(self.operator, left, right)

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class Arithmetic(Node):
    """A left-to-right chain of same-precedence operators, evaluated iteratively.

    Keeping ``1 + 2 + 3 + ...`` as one node rather than a left-deep tree means
    a long but flat expression cannot exhaust the Python stack.
    """

    first: Node
    rest: tuple[tuple[str, int, Node], ...]  # (operator, column, operand)

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        result = self.first.evaluate(variables, budget)
        for operator, column, operand in self.rest:
            right = operand.evaluate(variables, budget)
            result = _arithmetic(operator, result, right, column, budget)
        return result

    def children(self) -> tuple[Node, ...]:
        return (self.first, *(operand for _, _, operand in self.rest))


def _item(container: Any, key: Any) -> Any:
    """``container[key]`` for JSON data: a list by a whole number from 0, an object
    by a text key; ``None`` for anything else (never a Python attribute)."""
    if isinstance(container, list | tuple):
        if isinstance(key, bool) or not isinstance(key, int | float):
            return None
        if isinstance(key, float) and not key.is_integer():
            return None
        index = int(key)
        return container[index] if 0 <= index < len(container) else None
    if isinstance(container, dict) and isinstance(key, str):
        return container.get(key)
    return None


def _field(container: Any, name: str) -> Any:
    """A ``.name`` step, read as a path segment is: digits index a list."""
    if isinstance(container, list | tuple):
        return _item(container, int(name)) if name.isdigit() and len(name) <= 18 else None
    return _item(container, name)


@dataclass(frozen=True, slots=True)
class Postfix(Node):
    """Indexing and field steps after a value: ``slots[choice - 1].label``.

    One node with a flat list of steps, like :class:`Arithmetic`, so a long chain
    does not deepen the tree."""

    base: Node
    steps: tuple[Node | tuple[str, ...], ...]  # an index expression, or field names

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        value = self.base.evaluate(variables, budget)
        for step in self.steps:
            if isinstance(step, Node):
                value = _item(value, step.evaluate(variables, budget))
            else:
                for name in step:
                    value = _field(value, name)
        return value

    def children(self) -> tuple[Node, ...]:
        return (self.base, *(step for step in self.steps if isinstance(step, Node)))


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A call to one of the whitelisted functions (checked when parsing)."""

    name: str
    arguments: tuple[Node, ...]
    column: int

    def evaluate(self, variables: Mapping[str, Any], budget: Budget) -> Any:
        function = _FUNCTIONS[self.name]
        values = [argument.evaluate(variables, budget) for argument in self.arguments]
        if function.reads_variables:
            return function.implementation(self.column, budget, variables, *values)
        return function.implementation(self.column, budget, *values)

    def children(self) -> tuple[Node, ...]:
        return self.arguments


def _collect_paths(node: Node) -> Iterator[str]:
    if isinstance(node, Variable):
        yield node.path
    for child in node.children():
        yield from _collect_paths(child)


def calendar_names(expression: Expression) -> Iterator[str | None]:
    """The calendar each ``is_open``/``next_open`` call of ``expression`` names: its
    name when written as a constant, ``None`` when computed while the flow runs."""
    stack: list[Node] = [expression.root]
    while stack:
        node = stack.pop()
        if isinstance(node, Call) and node.name in CALENDAR_FUNCTIONS:
            first = node.arguments[0]
            yield first.value if isinstance(first, Constant) else None
        stack.extend(node.children())


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled condition: parse once, evaluate for every step that reaches it.

    Instances are immutable and shared through the compile cache, so
    evaluation never mutates the tree.
    """

    source: str
    root: Node
    _ordered: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _paths: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(dict.fromkeys(_collect_paths(self.root)))
        object.__setattr__(self, "_ordered", ordered)
        object.__setattr__(self, "_paths", frozenset(ordered))

    def evaluate(self, variables: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """Evaluate against ``variables``; only :class:`ExpressionError` and, past a
        bound of ``budget`` (by default ``max_value_bytes``' default),
        :class:`~trilha.errors.LimitExceeded` escape."""
        try:
            return self.root.evaluate(variables, budget or Budget())
        except RecursionError as exc:  # pathologically nested variable data
            raise ExpressionError("value is nested too deeply to evaluate") from exc

    def paths(self) -> frozenset[str]:
        """The variable paths this expression reads, for flow validation."""
        return self._paths

    def ordered_paths(self) -> tuple[str, ...]:
        """The same paths in order of first reading, for stable messages."""
        return self._ordered


# ------------------------------------------------------------------------ tokenizer


class _Kind(enum.Enum):
    CONSTANT = "constant"  # numbers, strings, true/false/null
    NAME = "name"  # a dotted path, a loop variable, or a function name
    FIELD = "field"  # ".name.0" straight after "]" or ")": the names
    OPERATOR = "operator"  # punctuation and keyword operators, normalised
    END = "end"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # as written, for error messages
    value: Any  # constant value, path, or normalised operator
    column: int


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_TOKEN: Final = re.compile(rf"{_IDENTIFIER}(?:\.(?:{_IDENTIFIER}|[0-9]+))*")
_FIELD_TOKEN: Final = re.compile(rf"(?:\.(?:{_IDENTIFIER}|[0-9]+))+")
_LOOP_TOKEN: Final = re.compile(rf"@{_IDENTIFIER}")
_NUMBER_TOKEN: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_NAME_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)
_KEYWORD_OPERATORS: Final = frozenset({"and", "or", "not", "in"})
_KEYWORD_CONSTANTS: Final[Mapping[str, Any]] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "null": None,
    "None": None,
}
_SYMBOLS: Final[Mapping[str, str]] = {
    "==": "==",
    "!=": "!=",
    "<=": "<=",
    ">=": ">=",
    "&&": "and",
    "||": "or",
    "<": "<",
    ">": ">",
    "!": "not",
    "+": "+",
    "-": "-",
    "*": "*",
    "/": "/",
    "%": "%",
    "(": "(",
    ")": ")",
    "[": "[",
    "]": "]",
    ",": ",",
}
_ESCAPES: Final[Mapping[str, str]] = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def _read_string(source: str, start: int) -> tuple[_Token, int]:
    quote = source[start]
    parts: list[str] = []
    position = start + 1
    while position < len(source):
        character = source[position]
        if character == quote:
            token = _Token(_Kind.CONSTANT, source[start : position + 1], "".join(parts), start + 1)
            return token, position + 1
        if character == "\\":
            if position + 1 == len(source):
                break
            escaped = source[position + 1]
            if escaped not in _ESCAPES:
                _fail(f"unknown escape '\\{escaped}'", position + 1)
            parts.append(_ESCAPES[escaped])
            position += 2
            continue
        parts.append(character)
        position += 1
    _fail("unterminated string starting", start + 1)


def _read_name(source: str, start: int) -> tuple[_Token, int]:
    match = _PATH_TOKEN.match(source, start)
    assert match is not None  # the caller saw an identifier start
    end = match.end()
    if end < len(source) and (source[end] in _NAME_CHARACTERS or source[end] == "."):
        if source[end] == ".":
            _fail("expected a name or index after '.'", end + 1)
        _fail("invalid name or path segment", start + 1)
    text = match.group()
    segments = text.split(".")
    if any(segment.startswith("__") for segment in segments):
        _fail("names starting with '__' are not allowed", start + 1)
    first = segments[0]
    if len(segments) > 1 and (first in _KEYWORD_OPERATORS or first in _KEYWORD_CONSTANTS):
        _fail(f"{first!r} is a keyword and cannot start a path", start + 1)
    if first in _KEYWORD_OPERATORS:
        return _Token(_Kind.OPERATOR, text, text, start + 1), end
    if first in _KEYWORD_CONSTANTS:
        return _Token(_Kind.CONSTANT, text, _KEYWORD_CONSTANTS[text], start + 1), end
    return _Token(_Kind.NAME, text, text, start + 1), end


def _read_field(source: str, start: int) -> tuple[_Token, int]:
    match = _FIELD_TOKEN.match(source, start)
    if match is None:
        _fail("expected a name or index after '.'", start + 1)
    end = match.end()
    if end < len(source) and (source[end] in _NAME_CHARACTERS or source[end] == "."):
        if source[end] == ".":
            _fail("expected a name or index after '.'", end + 1)
        _fail("invalid name or path segment", start + 2)
    names = tuple(match.group()[1:].split("."))
    if any(name.startswith("__") for name in names):
        _fail("names starting with '__' are not allowed", start + 2)
    return _Token(_Kind.FIELD, match.group(), names, start + 1), end


def _read_loop_name(source: str, start: int) -> tuple[_Token, int]:
    match = _LOOP_TOKEN.match(source, start)
    name = match.group() if match is not None else "@"
    if name not in LOOP_NAMES:
        _fail(f"unknown loop variable {name!r}; use @index, @number, @first or @last", start + 1)
    end = start + len(name)
    if end < len(source) and source[end] == ".":
        _fail(f"{name} has no fields", end + 1)
    return _Token(_Kind.NAME, name, name, start + 1), end


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        character = source[position]
        if character in " \t\r\n":
            position += 1
        elif character in "'\"":
            token, position = _read_string(source, position)
            tokens.append(token)
        elif "0" <= character <= "9":
            match = _NUMBER_TOKEN.match(source, position)
            assert match is not None  # starts with a digit
            end = match.end()
            if end < len(source) and (source[end] in _NAME_CHARACTERS or source[end] == "."):
                _fail("invalid number", position + 1)
            text = match.group()
            if "." not in text and len(text.lstrip("0")) > len(str(INT_MAX)):
                _fail("number does not fit in 64 bits", position + 1)
            value = float(text) if "." in text else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                _fail("number is too large", position + 1)
            if isinstance(value, int) and value > INT_MAX:
                _fail("number does not fit in 64 bits", position + 1)
            tokens.append(_Token(_Kind.CONSTANT, text, value, position + 1))
            position = end
        elif character in _NAME_CHARACTERS:
            token, position = _read_name(source, position)
            tokens.append(token)
        elif character == "." and position > 0 and source[position - 1] in ")]":
            token, position = _read_field(source, position)
            tokens.append(token)
        elif character == "@":
            token, position = _read_loop_name(source, position)
            tokens.append(token)
        else:
            symbol = source[position : position + 2]
            if symbol not in _SYMBOLS:
                symbol = character
            if symbol not in _SYMBOLS:
                error = _error(f"unexpected {character!r}", position + 1)
                if character == "=":
                    error = ExpressionError(f"{error}; use '==' to compare", column=position + 1)
                raise error
            tokens.append(_Token(_Kind.OPERATOR, symbol, _SYMBOLS[symbol], position + 1))
            position += len(symbol)
    tokens.append(_Token(_Kind.END, "", None, len(source) + 1))
    return tokens


# --------------------------------------------------------------------------- parser

_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})


class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._tokens = tokens
        self._position = 0
        self._depth = 0

    def parse(self) -> Node:
        if self._peek().kind is _Kind.END:
            raise ExpressionError("empty expression")
        node = self._or()
        if self._peek().kind is not _Kind.END:
            raise self._unexpected()
        return node

    # -- helpers

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._position + offset, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _at(self, *operators: str, offset: int = 0) -> bool:
        token = self._peek(offset)
        return token.kind is _Kind.OPERATOR and token.value in operators

    def _expect(self, operator: str) -> None:
        if not self._at(operator):
            raise self._unexpected()
        self._advance()

    def _unexpected(self) -> ExpressionError:
        token = self._peek()
        if token.kind is _Kind.END:
            return _error("unexpected end of expression", token.column)
        shown = token.text if len(token.text) <= 30 else token.text[:27] + "..."
        return _error(f"unexpected {shown!r}", token.column)

    @contextmanager
    def _nested(self, column: int) -> Iterator[None]:
        # Every construct that recurses counts, which bounds both the parser's
        # and the evaluator's Python stack use.
        self._depth += 1
        if self._depth > MAX_DEPTH:
            _fail(f"expression nests deeper than {MAX_DEPTH} levels", column)
        try:
            yield
        finally:
            self._depth -= 1

    # -- grammar rules

    def _or(self) -> Node:
        operands = [self._and()]
        while self._at("or"):
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def _and(self) -> Node:
        operands = [self._not()]
        while self._at("and"):
            self._advance()
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def _not(self) -> Node:
        if self._at("not"):
            column = self._advance().column
            with self._nested(column):
                return Not(self._not())
        return self._comparison()

    def _comparison_operator(self) -> str | None:
        if self._at(*_COMPARISONS, "in"):
            return str(self._peek().value)
        if self._at("not") and self._at("in", offset=1):
            return "not in"
        return None

    def _comparison(self) -> Node:
        left = self._sum()
        operator = self._comparison_operator()
        if operator is None:
            return left
        self._position += 2 if operator == "not in" else 1
        right = self._sum()
        if self._comparison_operator() is not None:
            _fail("comparisons cannot be chained; combine them with 'and'", self._peek().column)
        return Compare(operator, left, right)

    def _sum(self) -> Node:
        first = self._product()
        rest: list[tuple[str, int, Node]] = []
        while self._at("+", "-"):
            token = self._advance()
            rest.append((token.value, token.column, self._product()))
        return Arithmetic(first, tuple(rest)) if rest else first

    def _product(self) -> Node:
        first = self._unary()
        rest: list[tuple[str, int, Node]] = []
        while self._at("*", "/", "%"):
            token = self._advance()
            rest.append((token.value, token.column, self._unary()))
        return Arithmetic(first, tuple(rest)) if rest else first

    def _unary(self) -> Node:
        if self._at("-"):
            column = self._advance().column
            with self._nested(column):
                return Negate(self._unary(), column)
        return self._postfix(self._primary())

    def _postfix(self, node: Node) -> Node:
        steps: list[Node | tuple[str, ...]] = []
        while True:
            if self._at("["):
                column = self._advance().column
                with self._nested(column):
                    key = self._or()
                self._expect("]")
                if (
                    isinstance(key, Constant)
                    and isinstance(key.value, str)
                    and key.value.startswith("__")
                ):
                    _fail("names starting with '__' are not allowed", column + 1)
                steps.append(key)
            elif self._peek().kind is _Kind.FIELD:
                steps.append(self._advance().value)
            else:
                return Postfix(node, tuple(steps)) if steps else node

    def _primary(self) -> Node:
        token = self._peek()
        if token.kind is _Kind.CONSTANT:
            self._advance()
            return Constant(token.value)
        if token.kind is _Kind.NAME:
            self._advance()
            if self._at("("):
                return self._call(token)
            return Variable(token.value)
        if self._at("("):
            self._advance()
            with self._nested(token.column):
                node = self._or()
            self._expect(")")
            return node
        if self._at("["):
            self._advance()
            with self._nested(token.column):
                items = self._sequence("]")
            return ListDisplay(items)
        raise self._unexpected()

    def _sequence(self, closing: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while not self._at(closing):
            items.append(self._or())
            if not self._at(closing):
                self._expect(",")
        self._advance()
        return tuple(items)

    def _call(self, name: _Token) -> Node:
        if name.value not in _FUNCTIONS:
            _fail(f"unknown function {name.text!r}", name.column)
        self._advance()  # "("
        with self._nested(name.column):
            arguments = self._sequence(")")
        function = _FUNCTIONS[name.value]
        if not function.minimum <= len(arguments) <= function.maximum:
            _fail(
                f"{name.value}() takes {_arity(function)}, got {len(arguments)}",
                name.column,
            )
        if name.value in CALENDAR_FUNCTIONS and isinstance(arguments[0], Constant):
            which = arguments[0].value
            if not calendars.valid_name(which):
                shown = repr(which) if isinstance(which, str) else _type_name(which)
                _fail(
                    f"{name.value}() names a calendar: {shown[:70]} is not a calendar's name"
                    " (letters, digits, '-' and '_', up to 64, such as 'clinic')",
                    name.column,
                )
        return Call(name.value, arguments, name.column)


def _arity(function: _Function) -> str:
    low, high = function.minimum, function.maximum
    if low == high:
        return f"{low} argument{'' if low == 1 else 's'}"
    joiner = " or " if high == low + 1 else " to "
    return f"{low}{joiner}{high} arguments"


# ------------------------------------------------------------------------------ API


@functools.lru_cache(maxsize=1024)
def compile_expression(source: str) -> Expression:
    """Parse ``source`` once; flows evaluate the same few conditions over and over.

    Raises :class:`ExpressionError` naming the column and the reason, so a flow
    is rejected when it is loaded rather than when a user reaches the branch.
    """
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {_type_name(source)}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"expression is longer than {MAX_SOURCE_LENGTH} characters ({len(source)})"
        )
    return Expression(source, _Parser(_tokenize(source)).parse())


def evaluate(source: str, variables: Mapping[str, Any], budget: Budget | None = None) -> Any:
    """Compile (through the cache) and evaluate in one call, for one-off conditions."""
    return compile_expression(source).evaluate(variables, budget)
