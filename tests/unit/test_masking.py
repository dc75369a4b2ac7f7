"""Masking of personal data and secrets in log text and values (DESIGN §5, issue 4)."""

from __future__ import annotations

import copy
import re
import time
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from masking_cases import MASKED  # tests/ is on sys.path (rootdir mode)
from trilha.observability.masking import (
    DEFAULT_SECRET_KEYS,
    MASK,
    Masker,
    mask_text,
    mask_value,
)

# --- table tests -----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masks_each_kind(text: str, expected: str) -> None:
    """Each kind of personal data or secret is masked in the documented form."""
    assert mask_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masks_embedded(text: str, expected: str) -> None:
    """The same data is masked inside a sentence, with unicode around it."""
    assert mask_text(f"Olá, São Paulo — «{text}» ✓ fim") == f"Olá, São Paulo — «{expected}» ✓ fim"


READABLE = [
    "42",
    "resposta 42, tentativa 3 de 5",
    "2026-11-27",
    "2026-11-27T14:30:00.123456+00:00",
    "2026-11-27 14:30:00Z",
    "14:30",
    "14:30:59",
    "27/11/2026",
    "R$ 1.234,56",
    "R$ 1.234.567.890,12",
    "node ask_cpf -> check_phone_2",
    "123e4567-e89b-12d3-a456-426614174000",
    "12345678-1234-1234-1234-123456789012",
    "9f86d081884c7d659a2feaa0c55ad015",
    "98765432109876543210987654321098",
    "execution 9f86d081884c7d659a2feaa0c55ad015 step 12",
    "ab12345678901234cd",
    "127.0.0.1:8080",
    "192.168.100.200",
    "2025-2026",
    "duration_ms=1234.5",
    "max_tokens=512",
    "tokens: 512",
    "the secretary",
    "12345678901234567",  # 17 digits, not Luhn-valid: a protocol number
    "v1.2.3",
]


@pytest.mark.parametrize("text", READABLE)
def test_leaves_ordinary_text(text: str) -> None:
    """Short numbers, amounts, dates, times, ids, UUIDs and hex execution ids stay readable."""
    assert mask_text(text) == text


def test_card_failing_luhn_is_not_a_card() -> None:
    """A grouped 16-digit number that fails the Luhn check is left alone."""
    assert mask_text("4111 1111 1111 1112") == "4111 1111 1111 1112"


@pytest.mark.parametrize(("text", "_expected"), MASKED)
def test_idempotent(text: str, _expected: str) -> None:
    """Masking twice gives the same text as masking once."""
    once = mask_text(text)
    assert mask_text(once) == once


# --- values ----------------------------------------------------------------


def test_secret_keys_mask_whole_value() -> None:
    """A value under a secret key becomes the marker, whatever its type; None stays None."""
    value = {
        "Authorization": "Bearer x",
        "TOKEN": 12345,
        "password": {"nested": "hunter2"},
        "cpf": "123",
        "email": None,
        "card": ["4111"],
    }
    assert mask_value(value) == {
        "Authorization": MASK,
        "TOKEN": MASK,
        "password": MASK,
        "cpf": MASK,
        "email": None,
        "card": MASK,
    }


def test_credential_suffix_keys() -> None:
    """Keys ending in token, secret, password or api key are secret in any spelling."""
    keys = ["db_password", "refresh_token", "client_secret", "X-Api-Key", "userPassword"]
    assert mask_value(dict.fromkeys(keys, "x")) == dict.fromkeys(keys, MASK)


def test_default_secret_keys() -> None:
    """The documented default names are all secret keys."""
    assert {
        "authorization",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "password",
        "secret",
        "cpf",
        "cnpj",
        "phone",
        "email",
        "card",
    } <= DEFAULT_SECRET_KEYS


def test_recurses_into_containers() -> None:
    """Strings inside nested dicts, lists and tuples are masked; other types are kept."""
    value: dict[str, Any] = {
        "message": "ligue (11) 98765-4321",
        "vars": {"contato": ["ana@x.com", ("cpf 123.456.789-09", 7)], "ok": True},
        "count": 3,
        "ratio": 0.5,
        "nothing": None,
    }
    assert mask_value(value) == {
        "message": "ligue (**) *****-**21",
        "vars": {"contato": ["a***@***.com", ("cpf ***.***.***-**", 7)], "ok": True},
        "count": 3,
        "ratio": 0.5,
        "nothing": None,
    }


def test_numbers_under_personal_keys() -> None:
    """Long numbers under a personal-data key are masked; short ones and other keys stay."""
    value = {"telefone": 11987654321, "cpf_cliente": 12345678909, "phone_count": 2, "order": 7}
    assert mask_value(value) == {
        "telefone": "*********21",
        "cpf_cliente": "***********",
        "phone_count": 2,
        "order": 7,
    }


def test_bare_numbers_in_personal_string() -> None:
    """Under a personal-data key even a 9-digit string is masked (the last two digits stay)."""
    assert mask_value({"celular": "987654321"}) == {"celular": "*******21"}


def test_keys_with_personal_data_are_masked() -> None:
    """A dict keyed by phone numbers does not leak them through its keys."""
    assert mask_value({"5511987654321": 1}) == {"***********21": 1}


def test_does_not_mutate_input() -> None:
    """The input is left exactly as it was."""
    value: dict[str, Any] = {"token": "t", "list": ["ana@x.com", {"phone": "1"}], "t": ("a@b.co",)}
    before = copy.deepcopy(value)
    masked = mask_value(value)
    assert value == before
    assert masked is not value and masked["list"] is not value["list"]


def test_cycles_do_not_recurse_forever() -> None:
    """A self-referencing structure is cut at the cycle."""
    loop: list[Any] = ["ana@x.com"]
    loop.append(loop)
    assert mask_value(loop) == ["a***@***.com", "[cycle]"]


def test_value_idempotent() -> None:
    """Masking a value twice gives the same value as once."""
    value = {"token": "t", "msg": "cpf 12345678909 tel +55 11 98765-4321", "telefone": 11987654321}
    once = mask_value(value)
    assert mask_value(once) == once


def test_custom_secret_keys() -> None:
    """secret_keys replaces the default names (credential suffixes still apply)."""
    assert mask_value({"pin": "1", "cpf": "2", "db_password": "3"}, secret_keys={"PIN"}) == {
        "pin": MASK,
        "cpf": "2",
        "db_password": MASK,
    }


def test_masker_adds_configured_secrets() -> None:
    """A Masker masks configured secret variables in text and values, besides the defaults."""
    masker = Masker(frozenset({"PIN", "chave_pix"}))
    assert masker.secret_keys == {"pin", "chave_pix"}
    assert masker.text("pin=1234 chave_pix: abc token=x") == (
        "pin=[masked] chave_pix: [masked] token=[masked]"
    )
    assert masker.value({"Pin": 1, "cpf": "x", "msg": "pin: 99"}) == {
        "Pin": MASK,
        "cpf": MASK,
        "msg": "pin: [masked]",
    }
    assert Masker().text("pin=1234") == "pin=1234"


# --- speed -----------------------------------------------------------------

_LINE = (
    "execução 9f86d081884c7d659a2feaa0c55ad015 nó ask_cpf em 2026-11-27T14:30:00Z: "
    "cliente ana@x.com, tel (11) 98765-4321, cpf 123.456.789-09, valor R$ 1.234,56, "
    "cartão 4111 1111 1111 1111, token=abc123 e texto comum sem dados pessoais.\n"
)


@pytest.mark.parametrize(
    "text",
    [
        (_LINE * 500)[:100_000],
        "a" * 100_000,
        "1" * 100_000,
        "1 " * 50_000,
        "a@" * 50_000,
        "+1" * 50_000,
        "(" * 100_000,
        "a." * 50_000 + "@",
        "token=" * 16_000,
        "Bearer " * 14_000,
        ("x" * 63 + ".") * 1_500,
        "eyJ" * 33_000,
    ],
    ids=lambda t: repr(t[:6]),
)
def test_linear_time(text: str) -> None:
    """100 KB, realistic or adversarial, is masked in linear time (no backtracking blow-up)."""
    start = time.perf_counter()
    mask_text(text)
    # ~10-35 ms on a laptop; a backtracking blow-up takes minutes, so the bound is far
    # from both and a loaded CI machine does not flake
    assert time.perf_counter() - start < 5.0


# --- properties ------------------------------------------------------------

# surrounding text: any unicode but ASCII digits and "@", so that every digit run
# and e-mail address in the input comes from an embedded item
_FILLER = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="0123456789@"),
    max_size=20,
)
_LEFT = st.sampled_from([" ", "\n", ": ", " (", "\t", " — ", " «", ", "])
_RIGHT = st.sampled_from([" ", "\n", ", ", ". ", ") ", "; ", "» ", "!\n"])


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def _check(digits: str, weights: range | list[int]) -> str:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    return str(0 if rest < 2 else 11 - rest)


@st.composite
def _cpf(draw: st.DrawFn) -> str:
    base = draw(_digits(9))
    base += _check(base, range(10, 1, -1))
    base += _check(base, range(11, 1, -1))
    if draw(st.booleans()):
        return f"{base[:3]}.{base[3:6]}.{base[6:9]}-{base[9:]}"
    return base


_CNPJ_WEIGHTS = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]


@st.composite
def _cnpj(draw: st.DrawFn) -> str:
    base = draw(_digits(12))
    base += _check(base, _CNPJ_WEIGHTS[1:])
    base += _check(base, _CNPJ_WEIGHTS)
    if draw(st.booleans()):
        return f"{base[:2]}.{base[2:5]}.{base[5:8]}/{base[8:12]}-{base[12:]}"
    return base


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


@st.composite
def _card(draw: st.DrawFn) -> str:
    n = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + draw(_digits(n - 2))
    number = body + _luhn_digit(body)
    form = draw(st.sampled_from(["bare", " ", "-", "amex"]))
    if form == "bare":
        return number
    if form == "amex" and n == 15:
        return f"{number[:4]} {number[4:10]} {number[10:]}"
    sep = "-" if form == "-" else " "
    return sep.join(number[i : i + 4] for i in range(0, n, 4))


@st.composite
def _phone(draw: st.DrawFn) -> str:
    ddd = f"{draw(st.integers(1, 9))}{draw(st.integers(1, 9))}"
    a, b = draw(_digits(4)), draw(_digits(4))
    forms = [
        f"+55 {ddd} 9{a}-{b}",
        f"+55{ddd}9{a}{b}",
        f"({ddd}) 9{a}-{b}",
        f"({ddd}) {draw(st.integers(2, 5))}{a[1:]}-{b}",
        f"{ddd} 9{a}-{b}",
        f"{ddd}9{a}{b}",
        f"+1 {draw(_digits(3))} {a[:3]} {b}",
        f"+44 20 {a} {b}",
    ]
    return draw(st.sampled_from(forms))


@st.composite
def _email(draw: st.DrawFn) -> str:
    word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
    local = draw(word) + draw(st.sampled_from(["", ".", "_", "+", "-"])) + draw(word)
    labels = draw(st.lists(word, min_size=1, max_size=3))
    tld = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6))
    return f"{local}@{'.'.join(labels)}.{tld}"


# a token always holds a digit, so it cannot be spelled by the digit-free filler
_TOKEN = st.tuples(
    st.text(alphabet="ABCDEFabcdefXYZxyz_-", min_size=6, max_size=30), _digits(3)
).map("".join)


@st.composite
def _secret(draw: st.DrawFn) -> tuple[str, str]:
    """A secret in context, and the part of it that must not survive."""
    token = draw(_TOKEN)
    form = draw(
        st.sampled_from(
            [
                "Bearer {}",
                "Authorization: Bearer {}",
                "token={}",
                "api_key: {}",
                "password={}",
                '"secret": "{}"',
                "access_token={}",
                "jwt",
            ]
        )
    )
    if form == "jwt":
        jwt = f"eyJ{token}.eyJ{token[::-1]}.{token}"
        return jwt, token
    return form.format(token), token


@st.composite
def _item(draw: st.DrawFn) -> tuple[str, list[str]]:
    """An embedded item and the strings that must not appear in the output."""
    kind = draw(st.sampled_from(["cpf", "cnpj", "card", "phone", "email", "secret"]))
    if kind == "secret":
        text, token = draw(_secret())
        return text, [token]
    if kind == "email":
        email = draw(_email())
        return email, [email]
    literal = draw({"cpf": _cpf(), "cnpj": _cnpj(), "card": _card(), "phone": _phone()}[kind])
    return literal, [literal, re.sub(r"[^0-9]", "", literal)]


@settings(max_examples=300, deadline=None)
@given(
    first=_FILLER,
    parts=st.lists(st.tuples(_LEFT, _item(), _RIGHT, _FILLER), min_size=1, max_size=4),
)
def test_embedded_data_never_leaks(
    first: str, parts: list[tuple[str, tuple[str, list[str]], str, str]]
) -> None:
    """Random text with embedded e-mails, phones, CPFs, CNPJs, cards and tokens leaks none."""
    text = first + "".join(left + item + right + filler for left, (item, _), right, filler in parts)
    out = mask_text(text)
    for _, (item, forbidden) in ((p[0], p[1]) for p in parts):
        for secret in forbidden:
            assert secret not in out, (item, secret, out)
    assert mask_text(out) == out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="0123456789@=:")))
def test_text_without_digits_or_at_is_unchanged(text: str) -> None:
    """Text without digits, "@", "=" or ":" (so no secret pair), Bearer or JWT is unchanged."""
    assume("bearer" not in text.lower() and "eyj" not in text.lower())
    assert mask_text(text) == text
