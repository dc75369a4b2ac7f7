"""Dotted variable paths: resolution into JSON-shaped data and syntax checks."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.paths import MISSING, is_valid_path, resolve_path

VARIABLES: dict[str, Any] = {
    "customer": {"name": "Ana", "address": {"city": "Recife"}, "vip": False, "note": None},
    "items": [{"name": "pizza"}, {"name": "soda"}],
    "pair": ("a", "b"),
    "codes": {"1": "one"},
    "count": 3,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


class _Object:
    """A Python object with attributes that paths must never reach."""

    secret = "leaked"

    def __init__(self) -> None:
        self.name = "leaked"


def test_missing_is_a_falsy_singleton() -> None:
    """MISSING is falsy, prints as MISSING, and survives copy and pickle as itself."""
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy(MISSING) is MISSING
    # Round-tripping our own object, not untrusted data.
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING  # noqa: S301
    assert type(MISSING)() is MISSING


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("customer", VARIABLES["customer"]),
        ("customer.name", "Ana"),
        ("customer.address.city", "Recife"),
        ("customer.vip", False),
        ("customer.note", None),
        ("items.0.name", "pizza"),
        ("items.1", {"name": "soda"}),
        ("pair.1", "b"),
        ("codes.1", "one"),
        ("count", 3),
    ],
)
def test_resolves_existing_paths(path: str, expected: Any) -> None:
    """Dotted segments walk dicts and numeric segments index lists and tuples."""
    assert resolve_path(VARIABLES, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "nobody",
        "customer.age",
        "customer.address.city.zip",
        "items.2",
        "items.name",
        "items.0.price",
        "count.0",
        "customer.name.0",
        "items.-1",
        "items.99999999999999999999999999999999999999",
        "items." + "9" * 5000,
        "",
        "customer..name",
    ],
)
def test_absent_paths_are_missing(path: str) -> None:
    """Any absent segment, non-container or out-of-range index gives MISSING, not an error."""
    assert resolve_path(VARIABLES, path) is MISSING


def test_stored_none_is_not_missing() -> None:
    """A variable set to None is reported as None, distinct from one never set."""
    assert resolve_path(VARIABLES, "customer.note") is None
    assert resolve_path(VARIABLES, "customer.absent") is MISSING


def test_never_reads_object_attributes() -> None:
    """Paths look only into dicts and lists, so Python attributes stay unreachable."""
    variables = {"obj": _Object(), "text": "abc"}
    assert resolve_path(variables, "obj.secret") is MISSING
    assert resolve_path(variables, "obj.name") is MISSING
    assert resolve_path(variables, "obj.__class__") is MISSING
    assert resolve_path(variables, "text.__class__") is MISSING
    assert resolve_path(variables, "text.0") is MISSING


@pytest.mark.parametrize(
    "path", ["a", "_a", "customer.address.city", "items.0.name", "a.0.1", "A_1.b2", "x.007"]
)
def test_valid_paths(path: str) -> None:
    """Identifiers and non-negative integer segments make a valid path."""
    assert is_valid_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "0",
        "0.a",
        "a.",
        ".a",
        "a..b",
        "a.-1",
        "a b",
        "a.b c",
        "1a",
        "a.1a",
        "a-b",
        "é",
        "a.0.5x",
    ],
)
def test_invalid_paths(path: str) -> None:
    """Empty segments, leading digits, signs, spaces and non-ASCII letters are refused."""
    assert not is_valid_path(path)


@given(variables=st.dictionaries(st.text(max_size=5), json_values, max_size=4), path=st.text())
def test_resolve_never_raises(variables: dict[str, Any], path: str) -> None:
    """Resolving any text against any JSON data returns a value or MISSING, never raises."""
    resolve_path(variables, path)


@given(
    st.lists(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]*", fullmatch=True) | st.integers(0, 10**6).map(str),
        min_size=1,
        max_size=6,
    ).filter(lambda segments: not segments[0].isdigit())
)
def test_paths_built_from_valid_segments_are_valid(segments: list[str]) -> None:
    """Joining identifier and index segments (identifier first) always gives a valid path."""
    assert is_valid_path(".".join(segments))
