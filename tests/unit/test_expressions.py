"""The safe condition language: parsing, semantics, limits and refusal of escapes."""

from __future__ import annotations

import ast
import contextlib
import re
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trilha.core.budget import DEFAULT_MAX_VALUE_BYTES, INT_MAX, Budget
from trilha.core.expressions import (
    FUNCTION_NAMES,
    MAX_DEPTH,
    MAX_SOURCE_LENGTH,
    Expression,
    compile_expression,
    evaluate,
    truthy,
)
from trilha.errors import ExpressionError, LimitExceeded

VARIABLES: dict[str, Any] = {
    "customer": {"name": " Ana ", "vip": True, "age": 30, "tags": ["new", "sp"]},
    "items": [{"name": "pizza", "price": 42.5}, {"name": "soda", "price": 7}],
    "answer": "Sim",
    "amount": "12.50",
    "zero": 0,
    "nothing": None,
    "empty": "",
}


class _Booby:
    """A Python object whose methods fail loudly if the evaluator ever calls them."""

    secret = "leaked"

    def __bool__(self) -> bool:
        raise AssertionError("__bool__ was called")

    def __len__(self) -> int:
        raise AssertionError("__len__ was called")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"attribute {name} was read")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # literals
        ("1", 1),
        ("2.5", 2.5),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\\nb\\tc\\\\'", "a\nb\tc\\"),
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("null", None),
        ("None", None),
        ("[1, 'a', [true]]", [1, "a", [True]]),
        ("[]", []),
        ("[1, 2,]", [1, 2]),
        # paths
        ("customer.age", 30),
        ("customer.tags.1", "sp"),
        ("items.0.name", "pizza"),
        ("missing", None),
        ("missing.deeper.0", None),
        ("items.5.name", None),
        # arithmetic
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("7 % 3", 1),
        ("-customer.age + 1", -29),
        ("- -2", 2),
        ("2 * -3", -6),
        ("items.0.price + items.1.price", 49.5),
        ("'a' + 'b'", "ab"),
        # comparisons
        ("1 == 1.0", True),
        ("true == 1", False),
        ("false == 0", False),
        ("null == missing", True),
        ("missing == 0", False),
        ("1 != 2", True),
        ("'1' == 1", False),
        ("[1, true] == [1.0, true]", True),
        ("[1, true] == [1, 1]", False),
        ("customer.age >= 18", True),
        ("customer.age < 18", False),
        ("'abc' < 'abd'", True),
        ("missing > 3", False),
        ("missing < 3", False),
        ("'10' > 9", False),
        ("true > false", False),
        ("[2] > [1]", False),
        # membership
        ("'sp' in customer.tags", True),
        ("'rj' not in customer.tags", True),
        ("'An' in customer.name", True),
        ("'age' in customer", True),
        ("1 in [1.0, 2]", True),
        ("true in [1]", False),
        ("1 in 'a1'", False),
        ("'x' in missing", False),
        ("'x' not in missing", True),
        ("'x' in 5", False),
        # logic
        ("true and false", False),
        ("true && true", True),
        ("false or 1", True),
        ("false || ''", False),
        ("not missing", True),
        ("!customer.vip", False),
        ("not customer.age == 30", False),
        ("1 and 'a'", True),
        ("customer.vip and customer.age >= 18 or answer == 'Não'", True),
        ("not not customer.vip", True),
        # functions
        ("len(customer.tags)", 2),
        ("len('olá')", 3),
        ("len(customer)", 4),
        ("len(missing)", 0),
        ("lower(answer) == 'sim'", True),
        ("upper(answer)", "SIM"),
        ("trim(customer.name)", "Ana"),
        ("lower(missing)", None),
        ("number(amount) + 1", 13.5),
        ("number(' 42 ')", 42),
        ("number('-3')", -3),
        ("number('1e3')", 1000.0),
        ("number(7)", 7),
        ("number(missing)", None),
        ("text(3.0)", "3"),
        ("text(true)", "true"),
        ("text(missing)", ""),
        ("text(customer.tags)", '["new","sp"]'),
        ("text(12) + 'x'", "12x"),
        ("contains(customer.tags, 'new')", True),
        ("contains(answer, 'i')", True),
        ("contains(missing, 'x')", False),
        ("startswith(answer, 'Si')", True),
        ("startswith(missing, 'Si')", False),
        ("startswith(zero, '0')", False),
    ],
)
def test_evaluates(source: str, expected: Any) -> None:
    """Each construct of the language yields the documented value."""
    result = evaluate(source, VARIABLES)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("(a == 1)) and b", "unexpected ')' at column 9"),
        ("1 +", "unexpected end of expression at column 4"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("a = 1", "unexpected '=' at column 3; use '==' to compare"),
        ("a & b", "unexpected '&' at column 3"),
        ("'abc", "unterminated string starting at column 1"),
        ("'a\\qb'", "unknown escape '\\q' at column 3"),
        ("a.", "expected a name or index after '.' at column 2"),
        ("a..b", "expected a name or index after '.' at column 2"),
        ("1abc", "invalid number at column 1"),
        ("1.5.2", "invalid number at column 1"),
        ("x > 1" + "0" * 400 + ".5", "number is too large at column 5"),
        ("1 < x < 3", "comparisons cannot be chained; combine them with 'and' at column 7"),
        ("items[0", "unexpected end of expression at column 8"),
        ("items[]", "unexpected ']' at column 7"),
        ("items[0].", "expected a name or index after '.' at column 9"),
        ("items[0].__class__", "names starting with '__' are not allowed at column 10"),
        ("items['__class__']", "names starting with '__' are not allowed at column 7"),
        ("'abc'.upper", "unexpected '.' at column 6"),
        ("items [0] .name", "unexpected '.' at column 11"),
        ("@foo", "unknown loop variable '@foo'; use @index, @number, @first or @last at column 1"),
        ("@index.x", "@index has no fields at column 7"),
        ("now(1)", "now() takes 0 arguments, got 1 at column 1"),
        ("today(1, 2)", "today() takes 0 or 1 arguments, got 2 at column 1"),
        ("format_date(x)", "format_date() takes 2 to 4 arguments, got 1 at column 1"),
        ("add_days(x)", "add_days() takes 2 arguments, got 1 at column 1"),
        ("join()", "join() takes 1 or 2 arguments, got 0 at column 1"),
        ("len(a, b)", "len() takes 1 argument, got 2 at column 1"),
        ("contains(a)", "contains() takes 2 arguments, got 1 at column 1"),
        ("system('ls')", "unknown function 'system' at column 1"),
        ("true.x", "'true' is a keyword and cannot start a path at column 1"),
        ("[1, 2", "unexpected end of expression at column 6"),
        ("(1 2)", "unexpected '2' at column 4"),
        ("x == not y", "unexpected 'not' at column 6"),
    ],
)
def test_syntax_errors_name_position_and_reason(source: str, message: str) -> None:
    """Parse errors say what went wrong and at which column, before any evaluation."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert str(info.value) == message


def test_syntax_error_carries_column_detail() -> None:
    """The column is also in the error details, for the API and the flow validator."""
    with pytest.raises(ExpressionError) as info:
        compile_expression("a == )")
    assert info.value.details == {"column": 6}
    assert info.value.code == "expression_error"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0", "division by zero at column 3"),
        ("1 % 0.0", "division by zero at column 3"),
        ("'a' + 1", "cannot apply '+' to string and number at column 5"),
        ("'a' * 3", "cannot apply '*' to string and number at column 5"),
        ("missing + 1", "cannot apply '+' to null and number at column 9"),
        ("true + 1", "cannot apply '+' to boolean and number at column 6"),
        ("[1] + [2]", "cannot apply '+' to list and list at column 5"),
        ("'%s' % 'x'", "cannot apply '%' to string and string at column 6"),
        ("-answer", "cannot negate string at column 1"),
        ("number('abc')", "number() cannot convert 'abc' at column 1"),
        ("number('nan')", "number() cannot convert 'nan' at column 1"),
        ("number('inf')", "number() cannot convert 'inf' at column 1"),
        ("number('1_000')", "number() cannot convert '1_000' at column 1"),
        ("number('٣')", "number() cannot convert '٣' at column 1"),
        ("number('1e999')", "number() cannot convert '1e999' at column 1"),
        ("number(true)", "number() expects a string or number, got boolean at column 1"),
        ("lower(1)", "lower() expects a string, got number at column 1"),
        ("len(5)", "len() expects a string, list or object, got number at column 1"),
    ],
)
def test_evaluation_errors(source: str, message: str) -> None:
    """Real mistakes (wrong types, division by zero, bad numbers) raise ExpressionError."""
    with pytest.raises(ExpressionError) as info:
        evaluate(source, VARIABLES)
    assert str(info.value) == message


def test_and_or_short_circuit() -> None:
    """The right side of and/or is not evaluated once the result is known."""
    assert evaluate("false and 1 / 0", {}) is False
    assert evaluate("true or number('x')", {}) is True
    assert evaluate("missing and missing.x + 1", {}) is False


def test_float_overflow_is_an_error() -> None:
    """Arithmetic that would produce infinity raises instead of leaking inf into a flow."""
    with pytest.raises(ExpressionError, match="number is too large"):
        evaluate("big * big", {"big": 1e200})
    with pytest.raises(ExpressionError, match="number is too large"):
        evaluate("huge / 1", {"huge": 10**400})


def test_paths_lists_variables_read() -> None:
    """paths() names every variable path, and no function names or literals."""
    expression = compile_expression("a.b + c.0 > len(d) and 'e' in [f, 1] or not g.h.2")
    assert expression.paths() == frozenset({"a.b", "c.0", "d", "f", "g.h.2"})
    assert compile_expression("1 + 2").paths() == frozenset()


def test_compile_is_cached() -> None:
    """The same source compiles once; the cached tree is shared and immutable."""
    first = compile_expression("customer.age > 18")
    assert compile_expression("customer.age > 18") is first
    assert isinstance(first, Expression)
    assert compile_expression.cache_info().maxsize == 1024


def test_list_literals_are_fresh_each_time() -> None:
    """Mutating an evaluated list cannot change the shared compiled expression."""
    result = evaluate("[1, 2]", {})
    result.append(3)
    assert evaluate("[1, 2]", {}) == [1, 2]


def test_non_string_source_is_refused() -> None:
    """Compiling something that is not text is an ExpressionError, not a crash."""
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(123)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (0.0, False),
        (-1, True),
        ("", False),
        ("0", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
        ((), False),
    ],
)
def test_truthy(value: Any, expected: bool) -> None:
    """Truthiness follows JSON intuition: empty, zero and null are false."""
    assert truthy(value) is expected


def test_truthy_does_not_call_python_objects() -> None:
    """Foreign objects count as present without running their __bool__ or __len__."""
    assert truthy(_Booby()) is True


# ---------------------------------------------------------------------------- limits


def test_source_length_limit() -> None:
    """Sources up to the limit compile; one character more is refused."""
    at_limit = "1" + " " * (MAX_SOURCE_LENGTH - 1)
    assert compile_expression(at_limit).evaluate({}) == 1
    with pytest.raises(ExpressionError, match="longer than 2000 characters"):
        compile_expression(at_limit + " ")


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("(", ")"), ("[", "]"), ("len([", "])"), ("-", ""), ("not ", ""), ("!", "")],
)
def test_nesting_limit(opening: str, closing: str) -> None:
    """Nesting up to the limit compiles; one level deeper is refused."""
    per_level = 2 if opening == "len([" else 1
    levels = MAX_DEPTH // per_level
    compile_expression(opening * levels + "1" + closing * levels)
    deeper = levels + 1
    with pytest.raises(ExpressionError, match="nests deeper than 50 levels"):
        compile_expression(opening * deeper + "1" + closing * deeper)


def test_deepest_expression_evaluates_within_the_stack() -> None:
    """The most layered expression the limits allow parses and evaluates without RecursionError."""
    source = "v"
    for _ in range(MAX_DEPTH // 2):
        source = f"len([{source} * 1 + 1 < 1 and 1 or 1])"
    assert len(source) <= MAX_SOURCE_LENGTH
    assert compile_expression(source).evaluate({"v": 2}) == 1


def test_long_flat_chains_do_not_deepen_the_tree() -> None:
    """A long but flat chain is not nesting, so it compiles and evaluates."""
    assert evaluate("+".join(["1"] * 900), {}) == 900
    assert evaluate("||".join(["false"] * 250), {}) is False


def test_string_result_limit() -> None:
    """No operation may build a string larger than the budget (max_value_bytes)."""
    half = "x" * (DEFAULT_MAX_VALUE_BYTES // 2 - 1)
    assert len(evaluate("s + s", {"s": half})) == DEFAULT_MAX_VALUE_BYTES - 2
    with pytest.raises(LimitExceeded, match="larger than 65536 bytes") as caught:
        evaluate("s + s + 'y'", {"s": half})
    assert caught.value.details["kind"] == "limit"
    with pytest.raises(LimitExceeded, match="larger than 65536 bytes"):
        evaluate("upper(s)", {"s": "ß" * (DEFAULT_MAX_VALUE_BYTES // 2 + 1)})
    with pytest.raises(LimitExceeded, match="larger than 65536 bytes"):
        evaluate("text(items)", {"items": [half, half]})
    with pytest.raises(LimitExceeded, match="larger than 100 bytes"):
        evaluate("s + s", {"s": "x" * 60}, Budget(100))


def test_lists_of_shared_references_count_every_copy() -> None:
    """Finding 5: a list of references to one large string is as large as its copies,
    refused as it is built (nested lists too), however cheap the references are."""
    s = "x" * 10_000
    refs = ", ".join(["s"] * 6)
    assert len(evaluate(f"[{refs}]", {"s": s})) == 6
    with pytest.raises(LimitExceeded):
        evaluate(f"[{refs}, s]", {"s": s})
    nested = "[" + ", ".join([f"[{refs}]"] * 20) + "]"
    with pytest.raises(LimitExceeded):
        evaluate(nested, {"s": "x" * 1_000})
    # the found attack: a list of lists sharing one string, grown to gigabytes
    bomb = "[" + ", ".join(["[" + ", ".join(["s"] * 20) + "]"] * 20) + "]"
    with pytest.raises(LimitExceeded):
        evaluate(bomb, {"s": "y" * 60_000})


def test_integers_are_64_bit() -> None:
    """Finding 6: an integer result beyond 64 bits fails at once, a literal at compile."""
    assert evaluate("x * x", {"x": 3_037_000_499}) == 3_037_000_499**2
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("x * x", {"x": 3_037_000_500})
    chain = "x" + " * x" * 60
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate(chain, {"x": 10})
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("x + 1", {"x": INT_MAX})
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("-x - 2", {"x": INT_MAX})
    assert evaluate("-x - 1", {"x": INT_MAX}) == -(2**63)
    with pytest.raises(ExpressionError, match="64 bits"):
        compile_expression("9223372036854775808 + 0")
    with pytest.raises(ExpressionError, match="64 bits"):
        compile_expression("1" + "0" * 1000)
    assert evaluate("9223372036854775807", {}) == INT_MAX


def test_oversized_integers_are_limits() -> None:
    """Numbers beyond 64 bits from text, or in variables, are LimitExceeded."""
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("number(s)", {"s": "9" * 5000})
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("number(s)", {"s": "9223372036854775808"})
    assert evaluate("number(s)", {"s": "-9223372036854775808"}) == -(2**63)
    with pytest.raises(LimitExceeded, match="64 bits"):
        evaluate("text(n)", {"n": 10**5000})


# ------------------------------------------------------------------------- indexing

INDEXED: dict[str, Any] = {
    "slots": [{"id": "s1", "label": "09:00"}, {"id": "s2", "label": "10:00"}],
    "choice": 2,
    "grid": [[1, 2], [3]],
    "key": "label",
    "odd": "__class__",
    "customer": {"name": "Ana", "0": "zero"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("slots[0]", {"id": "s1", "label": "09:00"}),
        ("slots[0].label", "09:00"),
        ("slots[choice - 1].label", "10:00"),
        ("slots[choice - 1][key]", "10:00"),
        ("slots[1]['id']", "s2"),
        ("slots[1.0].id", "s2"),
        ("slots[0].label.0", None),
        ("grid[0][1]", 2),
        ("grid[1].0", 3),
        ("grid.0[1]", 2),
        ("[10, 20, 30][2]", 30),
        ("(slots)[0].id", "s1"),
        ("customer['name']", "Ana"),
        ("customer['0']", "zero"),
        ("customer.0", "zero"),
        # out of range, negative (no counting from the end), wrong key type: null
        ("slots[2]", None),
        ("slots[-1]", None),
        ("slots[0 - 1]", None),
        ("slots[1.5]", None),
        ("slots['0']", None),
        ("slots[true]", None),
        ("slots[null]", None),
        ("customer[0]", None),
        ("customer[odd]", None),
        ("customer['missing']", None),
        ("'abc'[0]", None),
        ("choice[0]", None),
        ("missing[0].x", None),
        ("len(slots)[0]", None),
        ("slots[choice - 1].label == '10:00'", True),
        ("-grid[1][0]", -3),
    ],
)
def test_indexing(source: str, expected: Any) -> None:
    """Lists index by a whole number from 0, objects by text; anything else is null."""
    assert evaluate(source, INDEXED) == expected


def test_indexing_reads_no_python_attributes() -> None:
    """A key computed at run time only ever looks up a dict key; Python objects give null."""
    variables = {"obj": _Booby(), "k": "secret", "d": {"secret": 1}}
    assert evaluate("obj[k]", variables) is None
    assert evaluate("obj[0]", variables) is None
    assert evaluate("d[k]", variables) == 1
    assert evaluate("d['keys']", variables) is None


def test_index_paths_are_read() -> None:
    """The variables an index reads count as read, in order of first reading."""
    expression = compile_expression("slots[choice - 1].label + names[k]")
    assert expression.paths() == frozenset({"slots", "choice", "names", "k"})
    assert expression.ordered_paths() == ("slots", "choice", "names", "k")


def test_long_index_chains_do_not_deepen_the_tree() -> None:
    """A chain of hundreds of steps evaluates without exhausting the Python stack."""
    nested: Any = "end"
    for _ in range(300):
        nested = [nested]
    assert evaluate("x" + "[0]" * 300, {"x": nested}) == "end"
    assert evaluate("x" + "[0].0" * 150, {"x": nested}) == "end"


# ------------------------------------------------------------------------ functions

SYS = {"sys": {"now": "2025-03-01T02:30:00Z", "executionId": "e-1"}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # now() is sys.now, as the engine set it
        ("now()", "2025-03-01T02:30:00Z"),
        # today: 02:30 UTC is still the day before in São Paulo (UTC-3)
        ("today()", "2025-03-01"),
        ("today('UTC')", "2025-03-01"),
        ("today('America/Sao_Paulo')", "2025-02-28"),
        ("today('Asia/Tokyo')", "2025-03-01"),
        ("today('-03:00')", "2025-02-28"),
        # format_date: the documented pattern letters
        ("format_date(now(), 'dd/MM/yyyy HH:mm', 'America/Sao_Paulo')", "28/02/2025 23:30"),
        ("format_date(now(), 'd/M/yy H:m:s', 'UTC')", "1/3/25 2:30:0"),
        ("format_date(now(), 'hh:mm a', 'America/Sao_Paulo')", "11:30 PM"),
        ("format_date(now(), 'h a', 'UTC')", "2 AM"),
        ("format_date('2025-03-01T12:05:09Z', 'h:mm:ss a')", "12:05:09 PM"),
        (
            "format_date(now(), 'EEEE, d MMMM yyyy', 'America/Sao_Paulo')",
            "Friday, 28 February 2025",
        ),
        ("format_date(now(), 'EEE d MMM', 'UTC')", "Sat 1 Mar"),
        ("format_date(now(), 'y', 'UTC')", "2025"),
        (
            "format_date(now(), \"EEEE, dd 'de' MMMM 'às' HH'h'mm\", 'America/Sao_Paulo', 'pt-BR')",
            "sexta-feira, 28 de fevereiro às 23h30",
        ),
        ("format_date('2025-03-03', 'EEE d MMM', null, 'pt')", "seg 3 mar"),
        ("format_date('2025-03-05', 'EEEE d MMMM', null, 'es-AR')", "miércoles 5 marzo"),
        ("format_date('2025-03-05', 'EEEE', null, 'fr')", "Wednesday"),
        ("format_date('2025-03-05', \"dd 'o''clock' ''\")", "05 o'clock '"),
        ("format_date('2025-03-05', '[dd]-MM.yyyy')", "[05]-03.2025"),
        # the value's own offset, unless a zone is given; a zone changes with the date (DST)
        ("format_date('2025-03-01T09:00:00-03:00', 'HH:mm')", "09:00"),
        ("format_date('2025-03-01T09:00:00-03:00', 'HH:mm', 'UTC')", "12:00"),
        ("format_date('2025-07-01T12:00:00Z', 'HH:mm', 'America/New_York')", "08:00"),
        ("format_date('2025-01-15T12:00:00Z', 'HH:mm', 'America/New_York')", "07:00"),
        ("format_date('2018-12-01T12:00:00Z', 'HH:mm', 'America/Sao_Paulo')", "10:00"),
        # wall-clock times (no offset) and bare dates are never converted
        ("format_date('2025-03-01T09:00:00', 'HH:mm', 'Asia/Tokyo')", "09:00"),
        ("format_date('2025-03-01', 'dd/MM HH:mm', 'Asia/Tokyo')", "01/03 00:00"),
        # epoch seconds, UTC
        ("format_date(1740832200, 'yyyy-MM-dd HH:mm', 'America/New_York')", "2025-03-01 07:30"),
        ("format_date(0, 'yyyy-MM-dd HH:mm:ss')", "1970-01-01 00:00:00"),
        ("format_date(1.5, 'ss')", "01"),
        # add_days / add_minutes keep the value's offset
        ("add_days(now(), 1)", "2025-03-02T02:30:00Z"),
        ("add_days('2025-03-01T09:00:00-03:00', -1)", "2025-02-28T09:00:00-03:00"),
        ("add_days('2024-02-28', 1)", "2024-02-29"),
        ("add_days('2025-03-01', 0.5)", "2025-03-01T12:00:00"),
        ("add_minutes('2025-03-01T23:30:00-03:00', 45)", "2025-03-02T00:15:00-03:00"),
        ("add_minutes('2025-03-01T09:00:00', -90)", "2025-03-01T07:30:00"),
        ("add_minutes('2025-03-01', 90)", "2025-03-01T01:30:00"),
        ("add_minutes(0, 1)", "1970-01-01T00:01:00Z"),
        ("add_minutes('2025-03-01T09:00:00.250+05:30', 1)", "2025-03-01T09:01:00.250000+05:30"),
        # weekday: ISO numbers, 1 is Monday
        ("weekday('2025-03-03')", 1),
        ("weekday('2025-03-02')", 7),
        ("weekday(now())", 6),
        ("weekday(now(), 'America/Sao_Paulo')", 5),
        ("weekday(add_days(today('America/Sao_Paulo'), 2))", 7),
        # null in, null out
        ("format_date(missing, 'dd')", None),
        ("add_days(missing, 1)", None),
        ("add_minutes(null, 1)", None),
        ("weekday(missing, 'UTC')", None),
        # join
        ("join(['a', 'b', 'c'], ' e ')", "a e b e c"),
        ("join([1, 2.5, true, null, 'x', [1]], '|')", "1|2.5|true||x|[1]"),
        ("join(['a', 'b'])", "a, b"),
        ("join([], '-')", ""),
        ("join(missing, '-')", ""),
        # the string functions that were already there, once more
        ("len('olá')", 3),
        ("upper('olá')", "OLÁ"),
        ("lower('ÉA')", "éa"),
        ("trim('  a b ')", "a b"),
        ("contains(['a'], 'a')", True),
        ("number(' 12 ')", 12),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    """Each function of the language, with time zones, offsets, epochs and languages."""
    result = evaluate(source, SYS)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("now()", "now() needs sys.now, the time the engine runs the step at, and it is not set"),
        ("today('UTC')", "today() needs sys.now, the time the engine runs the step at"),
    ],
)
def test_now_needs_sys_now(source: str, message: str) -> None:
    """The core never reads the clock: without the engine's sys.now, now() is an error."""
    for variables in ({}, {"sys": {}}, {"sys": {"now": 5}}):
        with pytest.raises(ExpressionError, match=re.escape(message)):
            evaluate(source, variables)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("today('Mars/Olympus')", "today(): unknown time zone 'Mars/Olympus' at column 1"),
        ("today('../../etc/passwd')", "today(): unknown time zone '../../etc/passwd' at column 1"),
        ("today('America')", "today(): unknown time zone 'America' at column 1"),
        ("today('+25:00')", "today(): unknown time zone '+25:00' at column 1"),
        (
            "format_date(now(), 'dd', 'Nowhere')",
            "format_date(): unknown time zone 'Nowhere' at column 1",
        ),
        (
            "weekday(now(), 3)",
            "weekday(): a time zone is a name such as 'America/Sao_Paulo', not 3 at column 1",
        ),
        (
            "format_date('tomorrow', 'dd')",
            "format_date(): 'tomorrow' is not an ISO-8601 date at column 1",
        ),
        (
            "add_days('2025-02-30', 1)",
            "add_days(): '2025-02-30' is not a valid date (day is out of range for month)"
            " at column 1",
        ),
        (
            "weekday('2025-03-01T25:00:00Z')",
            "weekday(): '2025-03-01T25:00:00Z' is not a valid date (hour must be in 0..23)"
            " at column 1",
        ),
        ("weekday(true)", "weekday(): expected a date, got a boolean at column 1"),
        ("weekday([1])", "weekday(): expected an ISO-8601 text or epoch seconds at column 1"),
        ("weekday(huge)", "weekday(): epoch seconds 1e+300 are out of range at column 1"),
        (
            "add_days('9999-12-31', 1)",
            "add_days(): '9999-12-31' shifted that far is out of range (years 1 to 9999)"
            " at column 1",
        ),
        (
            "add_minutes(now(), huge)",
            "add_minutes(): '2025-03-01T02:30:00Z' shifted that far is out of range"
            " (years 1 to 9999) at column 1",
        ),
        ("add_days(now(), '1')", "add_days(): expects a number of days, got string at column 1"),
        (
            "format_date(now(), 'dd de MMMM')",
            "format_date(): pattern letter 'e' is not supported",
        ),
        ("format_date(now(), 'YYYY')", "format_date(): pattern letter 'YYYY' is not supported"),
        ("format_date(now(), 'yyy')", "format_date(): pattern letter 'yyy' is not supported"),
        ('format_date(now(), "dd \'de")', "has an unclosed quote at column 1"),
        ("format_date(now(), 5)", "the pattern is a text such as 'dd/MM/yyyy' at column 1"),
        (
            f"format_date(now(), '{'d' * 101}')",
            "format_date(): the pattern is longer than 100 characters at column 1",
        ),
        ("join('abc', ',')", "join() expects a list, got string at column 1"),
        ("join(['a'], 1)", "join() expects a text separator, got number at column 1"),
    ],
)
def test_function_errors_name_the_value(source: str, message: str) -> None:
    """An unknown zone, an unparseable date or a bad pattern raises ExpressionError naming it."""
    with pytest.raises(ExpressionError) as info:
        evaluate(source, {**SYS, "huge": 1e300})
    assert message in str(info.value)


def test_long_date_text_is_refused_unread() -> None:
    """A date text longer than any ISO-8601 form is refused before it is parsed."""
    with pytest.raises(ExpressionError, match="is not an ISO-8601 date"):
        evaluate("weekday(x)", {"x": "2025-03-01" + " " * 10_000})


def test_join_is_bounded_by_the_budget() -> None:
    """join() counts the text it would build and stops before building it."""
    items = ["x" * 100] * 100
    assert len(evaluate("join(items, '')", {"items": items}, Budget(20_000))) == 10_000
    with pytest.raises(LimitExceeded):
        evaluate("join(items, '')", {"items": items}, Budget(5_000))
    with pytest.raises(LimitExceeded):
        evaluate("join(items, sep)", {"items": ["a"] * 1000, "sep": "-" * 100}, Budget(50_000))


def test_dates_are_replay_deterministic() -> None:
    """The same sys.now gives the same results, whenever it is evaluated."""
    source = "format_date(add_minutes(now(), 30), 'EEEE HH:mm', 'America/Sao_Paulo')"
    assert {evaluate(source, SYS) for _ in range(3)} == {"Saturday 00:00"}


def test_function_names_are_listed() -> None:
    """FUNCTION_NAMES lists what a template linter may accept, the new functions included."""
    expected = {"now", "today", "format_date", "add_days", "add_minutes", "weekday", "join"}
    assert expected | {"len", "upper", "lower", "trim", "contains", "number"} <= FUNCTION_NAMES


# ----------------------------------------------------------------------- no escapes


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "__import__('os').system('ls')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "x.__class__",
        "x.__dict__",
        "customer.__class__.__mro__",
        "__builtins__",
        "open('f')",
        "eval('1')",
        "exec('1')",
        "getattr(x, 'y')",
        "compile('1', 'f', 'eval')",
        "os.system('ls')",
        "customer.keys()",
        "'abc'.upper()",
        "[].__class__",
        "x['__class__']",
        "lambda: 1",
        "import os",
        "f'{x}'",
        "x; y",
        "x if y else z",
        "{1: 2}",
        "a ** 2",
        "x := 1",
    ],
)
def test_escape_attempts_are_refused(source: str) -> None:
    """Python escape hatches (dunders, builtins, calls, subscripts) fail to compile."""
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_paths_into_python_objects_are_inert() -> None:
    """A path into a Python object reads nothing and runs none of its code."""
    variables = {"obj": _Booby(), "customer": VARIABLES["customer"]}
    assert evaluate("obj.secret", variables) is None
    assert evaluate("obj.name == 'x'", variables) is False
    assert evaluate("len(customer.name.0)", variables) == 0


def test_does_not_use_python_eval() -> None:
    """The module never calls eval, exec, compile or literal_eval, not even indirectly."""
    import trilha.core.expressions as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not names & {"eval", "exec", "compile", "__import__", "getattr", "ast"}
    assert "literal_eval" not in attributes


# ----------------------------------------------------------------------- properties

_TOKENS = [
    *string.ascii_letters[:6],
    *string.digits[:4],
    " ",
    ".",
    "'",
    '"',
    "\\",
    *"()[],+-*/%<>=!&|",
    " and ",
    " or ",
    " not ",
    " in ",
    "true",
    "null",
    "len(",
    "number(",
    "text(",
    "__",
    "@index",
    "].",
    ").",
    "now(",
    "format_date(",
]

leaf = st.sampled_from(
    [
        *["1", "2.5", "0", "'a'", "''", '"b\\n"', "true", "null", "x", "y.z", "items.0", "s"],
        *["now()", "'2025-03-01'", "'2025-03-01T09:30:00-03:00'", "'UTC'", "'America/Sao_Paulo'"],
    ]
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(
        ["+", "-", "*", "/", "%", "==", "!=", "<", ">=", "in", "not in", "and", "or", "&&"]
    )
    return (
        st.tuples(children, binary, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        | children.map(lambda c: f"(not {c})")
        | children.map(lambda c: f"-({c})")
        | st.lists(children, max_size=3).map(lambda cs: "[" + ", ".join(cs) + "]")
        | st.tuples(
            st.sampled_from(["len", "lower", "upper", "trim", "number", "text"]), children
        ).map(lambda t: f"{t[0]}({t[1]})")
        | st.tuples(
            st.sampled_from(["contains", "startswith", "join", "add_days", "add_minutes"]),
            children,
            children,
        ).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
        | st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]")
        | st.tuples(children, st.sampled_from(["a", "0", "z.0"])).map(lambda t: f"({t[0]}).{t[1]}")
        | st.tuples(children, st.sampled_from(["'dd/MM/yyyy HH:mm'", "'EEEE'", "x"]), children).map(
            lambda t: f"format_date({t[0]}, {t[1]}, {t[2]})"
        )
        | st.tuples(st.sampled_from(["weekday", "today"]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        )
    )


well_formed = st.recursive(leaf, _combine, max_leaves=25)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["z", "0", "a"]), children, max_size=3)
    ),
    max_leaves=10,
)
variables_strategy = st.fixed_dictionaries(
    {},
    optional={
        "x": json_values,
        "y": json_values,
        "items": json_values,
        "s": json_values,
        "sys": st.fixed_dictionaries(
            {}, optional={"now": st.just("2025-03-01T02:30:00Z") | json_values}
        ),
    },
)


@given(st.text(max_size=300))
def test_random_text_only_raises_expression_error(source: str) -> None:
    """Arbitrary text either compiles or raises ExpressionError, never anything else."""
    with contextlib.suppress(ExpressionError):
        compile_expression(source)


@given(st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join))
def test_random_token_soup_only_raises_expression_error(source: str) -> None:
    """Near-miss expressions built from real tokens fail only with ExpressionError."""
    with contextlib.suppress(ExpressionError):
        compile_expression(source)


@settings(max_examples=300)
@given(source=well_formed, variables=variables_strategy)
@example(source="not not [x]", variables={"x": 2**63})  # found by CI: a limit, cleanly
def test_well_formed_expressions_compile_and_fail_only_cleanly(
    source: str, variables: dict[str, Any]
) -> None:
    """Generated expressions compile, and evaluating them raises only what evaluate
    documents: ExpressionError, or LimitExceeded past a bound (an integer beyond 64
    bits in a list it builds, a product that overflows: ``kind: limit``)."""
    try:
        expression = compile_expression(source)
    except ExpressionError as exc:
        refusal = str(exc)
    else:
        with contextlib.suppress(ExpressionError, LimitExceeded):
            expression.evaluate(variables)
        return
    # Unary chains can stack past the limit; that is the only acceptable refusal.
    assert "nests deeper" in refusal


INT32 = st.integers(min_value=-(2**31), max_value=2**31)


@given(INT32, INT32, INT32)
def test_integer_arithmetic_matches_python(a: int, b: int, c: int) -> None:
    """Precedence and associativity of + - * agree with ordinary arithmetic (on
    integers whose results fit the language's 64 bits)."""
    assert evaluate(f"{a} + {b} * {c} - {a}", {}) == a + b * c - a
    assert evaluate("a - b - c", {"a": a, "b": b, "c": c}) == a - b - c


@given(st.text(max_size=200))
def test_string_literals_round_trip(text: str) -> None:
    """Any text, escaped and quoted, evaluates back to itself."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    assert evaluate(f"'{escaped}'", {}) == text


@given(variables=variables_strategy)
def test_comparisons_always_return_booleans(variables: dict[str, Any]) -> None:
    """Comparisons and logic on any data yield True or False, never raise."""
    for source in ("x == y", "x != y", "x < y", "x >= s", "x in y", "s not in items", "x or y"):
        assert evaluate(source, variables) in (True, False)
