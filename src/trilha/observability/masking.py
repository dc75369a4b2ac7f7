"""Masking of personal data and secrets before anything is logged (DESIGN §5).

Log lines go to stdout, to files and to the store, where the debugger shows
them to whoever operates the platform. An operator must be able to tell *that*
a phone number, a CPF or a token was there, and roughly what kind it was,
without being able to read it. Hence one scheme, pure and deterministic:

================  ==================================  ==============================
kind              example                             masked
================  ==================================  ==============================
e-mail            ``joao.silva@empresa.com.br``       ``j***@***.br``
phone             ``+55 11 98765-4321``               ``+** ** *****-**21``
phone (bare)      ``11987654321``                     ``*********21``
CPF               ``123.456.789-09`` / 11 digits      ``***.***.***-**``
CNPJ              ``12.345.678/0001-95`` / 14 digits  ``**.***.***/****-**``
card (Luhn)       ``4111 1111 1111 1111``             ``**** **** **** 1111``
secret pair       ``password=hunter2``                ``password=[masked]``
header            ``Authorization: Bearer abc...``    ``Authorization: Bearer [masked]``
bearer token      ``Bearer abc...``                   ``Bearer [masked]``
JWT               ``eyJhbGciOi....eyJzdWIi....sig``   ``[masked]``
================  ==================================  ==============================

* Numbers keep their shape: each masked digit becomes one ``*`` and separators
  stay, so the kind is recognisable. A phone keeps its last 2 digits and a card
  its last 4 (what a support agent reads back to a customer); CPF and CNPJ keep
  nothing, their last digits being check digits.
* An e-mail keeps its first letter and top-level domain; the lengths of the
  local part and the domain are not shown.
* Secrets become ``[masked]``: their length and shape tell nothing useful, and
  the marker is found by a plain text search.
* The output of :func:`mask_text` is a fixed point: masking twice equals masking
  once (no rule matches a ``*``-run or ``[masked]``).

What stays readable on purpose: short numbers, amounts (``R$ 1.234,56``),
ISO dates and times, UUIDs and 32-hex execution ids (a digit run inside a word
or id is never taken for a phone), and numbers of 15 to 19 digits that fail the
Luhn check (protocol numbers). When in doubt the rules mask: a 10 to 14 digit
run standing alone is treated as a phone or document.

Secrets can only be recognised by their context (a key name, the ``Bearer``
scheme, the JWT shape); an opaque token alone in free text is not. That is why
:func:`mask_value` masks whole values by key, and why :class:`Masker` takes the
names of configured secret variables.

All patterns are precompiled, ASCII-only and bounded, and run in a single pass,
so the cost is linear in the text's length (about 20 ms for 100 KB).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trilha.core.execution import LogRecord

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "MASK",
    "Masker",
    "hide_credentials",
    "mask_text",
    "mask_value",
    "masked_record",
]

#: the marker that replaces a secret or a whole value under a secret key
MASK = "[masked]"

#: dict keys (lowercased) whose whole value is replaced by ``[masked]``
DEFAULT_SECRET_KEYS: frozenset[str] = frozenset(
    {
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
        "senha",  # Portuguese for password
    }
)

# A dict key that ends with one of these (after removing "_", "-", " ") holds a
# credential: db_password, refresh_token, client_secret, X-Api-Key, userPassword.
_CREDENTIAL_SUFFIXES = ("token", "secret", "password", "senha", "apikey", "authorization")
# A dict key that contains one of these holds personal data (customer_phone,
# telefone, cpfCliente): long numbers under it are masked even as ints.
_PERSONAL_FRAGMENTS = ("phone", "fone", "celular", "whatsapp", "cpf", "cnpj", "card", "cartao")

# ---------------------------------------------------------------------------
# patterns (ASCII, bounded quantifiers, no nested unbounded repetition)

# names that introduce a secret in "name=value" / "name: value" / "name": "value"
_CREDENTIAL_NAMES = r"authorization|access[_-]?token|token|api[_-]?key|password|passwd|secret|senha"
_KV_SEP = r"""["']?[ \t]{0,3}[=:][ \t]{0,3}"""
_KV_SCHEME = r"(?:bearer|basic|token|bot|digest)[ \t]{1,3}"
_KV_VALUE = (
    r"\[masked\]"
    r'|"(?:[^"\\\n]|\\.){0,4096}"'
    r"|'(?:[^'\\\n]|\\.){0,4096}'"
    # unquoted: up to whitespace or closing punctuation, unicode included (senha=coração1)
    r"""|(?u:[^\s"'&,;)}\]<>«»“”‘’]){1,4096}"""
)

_BEARER = r"\b(?i:bearer)[ \t]{1,3}[A-Za-z0-9._~+/-]{8,4096}={0,2}"
_JWT = (
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,8192}"
    r"(?:\.[A-Za-z0-9_-]{0,8192}){1,3}"
)
_EMAIL = (
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}"
    r"@(?:[A-Za-z0-9-]{1,63}\.){1,8}(?P<tld>[A-Za-z]{2,24})(?![A-Za-z0-9-])"
)

_HEX = "[0-9A-Fa-f]"
_UUID = rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_DATETIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
# the slash may arrive percent-encoded (a CNPJ in a URL a template rendered)
_CNPJ = (
    r"[0-9]{2}\.[0-9]{3}\.[0-9]{3}(?:/|%2[Ff])[0-9]{4}-[0-9]{2}"
    r"|[0-9]{8}(?:/|%2[Ff])[0-9]{4}-[0-9]{2}"
)
_CPF = r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}|[0-9]{9}-[0-9]{2}"
# grouped card numbers: 4-4-4-4(-1..3), 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-1..3 ...
_CARD = r"[0-9]{4}[ -][0-9]{4,6}[ -][0-9]{1,5}(?:[ -][0-9]{1,4}){0,2}"
_PHONE = (
    # international: + then 8 to 15 digits, with spaces, dots, dashes, parentheses
    r"\+(?:\)?[ .-]?\(?[0-9]){8,15}\)?"
    # Brazilian: (11) 98765-4321, (011) 3456-7890
    r"|\(0?[1-9][0-9]\)[ ]?(?:9[ .-]?)?[0-9]{4}[ .-]?[0-9]{4}"
    # Brazilian: 11 98765-4321, 11 3456 7890
    r"|0?[1-9][0-9][ .-](?:9[ .-]?)?[0-9]{4}[ .-]?[0-9]{4}"
    # mobile without area code: 98765-4321
    r"|9[0-9]{4}-[0-9]{4}"
)
_BARE = r"[0-9]{10,19}"

# a number starts where no word, and no "digit + separator" (the tail of a longer
# number such as 1.234.567), comes right before it; and ends likewise
_NUM_START = r"(?<![0-9A-Za-z_])(?<![0-9][.,-])"
_NUM_END = r"(?![0-9A-Za-z_])(?![.,/-][0-9])"
# a CPF or CNPJ written with its punctuation is one whatever follows it (another
# number after a slash, as in "123.456.789-09/..."): only a digit may not touch it
_FORMATTED = (
    r"(?<![0-9A-Za-z_])(?:(?P<fcnpj>[0-9]{2}\.[0-9]{3}\.[0-9]{3}(?:/|%2[Ff])[0-9]{4}-[0-9]{2})"
    r"|(?P<fcpf>[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}))(?![0-9])"
)

_NUMBERS = (
    rf"{_FORMATTED}|{_NUM_START}(?:(?P<keep>{_UUID}|{_DATETIME})|(?P<cnpj>{_CNPJ})|(?P<cpf>{_CPF})"
    rf"|(?P<card>{_CARD})|(?P<phone>{_PHONE})|(?P<bare>{_BARE})){_NUM_END}"
)

_DIGIT = re.compile(r"[0-9]")
_LONG_DIGITS = re.compile(r"[0-9]{8,}")


@functools.lru_cache(maxsize=32)
def _pattern(extra_names: frozenset[str]) -> re.Pattern[str]:
    """The single-pass pattern; ``extra_names`` are configured secret variables."""
    names = _CREDENTIAL_NAMES
    if extra_names:
        extra = "|".join(re.escape(n) for n in sorted(extra_names, key=len, reverse=True))
        names = f"{extra}|{names}"
    kv = (
        rf"(?P<kvkey>{names})(?P<kvsep>{_KV_SEP})"
        rf"(?P<kvscheme>{_KV_SCHEME})?(?P<kvvalue>{_KV_VALUE})"
    )
    alternatives = [
        kv,
        rf"(?P<bearer>{_BEARER})",
        rf"(?P<jwt>{_JWT})",
        rf"(?P<email>{_EMAIL})",
        _NUMBERS,
    ]
    return re.compile("|".join(alternatives), re.ASCII | re.IGNORECASE)


# ---------------------------------------------------------------------------
# check digits


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _check_digit(digits: str, weights: tuple[int, ...]) -> int:
    rest = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if rest < 2 else 11 - rest


def _cpf_valid(digits: str) -> bool:
    if len(digits) != 11:
        return False
    first = _check_digit(digits[:9], tuple(range(10, 1, -1)))
    second = _check_digit(digits[:10], tuple(range(11, 1, -1)))
    return digits[9:] == f"{first}{second}"


_CNPJ_WEIGHTS = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)


def _cnpj_valid(digits: str) -> bool:
    if len(digits) != 14:
        return False
    first = _check_digit(digits[:12], _CNPJ_WEIGHTS[1:])
    second = _check_digit(digits[:13], _CNPJ_WEIGHTS)
    return digits[12:] == f"{first}{second}"


# ---------------------------------------------------------------------------
# replacements


def _star_digits(text: str, keep: int = 0) -> str:
    """Each digit becomes ``*`` except the last ``keep``; separators stay."""
    count = 0
    total = sum("0" <= ch <= "9" for ch in text)
    out = []
    for ch in text:
        if "0" <= ch <= "9":
            count += 1
            out.append(ch if count > total - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def _mask_bare(digits: str) -> str | None:
    """A standalone run of digits, classified; None when it stays readable."""
    n = len(digits)
    if (n == 11 and _cpf_valid(digits)) or (n == 14 and _cnpj_valid(digits)):
        return "*" * n
    if 13 <= n <= 19 and _luhn(digits):
        return _star_digits(digits, keep=4)
    if n <= 14:
        return _star_digits(digits, keep=2)
    return None


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group()
    if kind == "kvvalue":
        value = match["kvvalue"]
        quote = value[0] if value[0] in "\"'" else ""
        return f"{match['kvkey']}{match['kvsep']}{match['kvscheme'] or ''}{quote}{MASK}{quote}"
    if kind == "bearer":
        return f"{text.split(None, 1)[0]} {MASK}"
    if kind == "jwt":
        return MASK
    if kind == "email":
        return f"{text[0]}***@***.{match['tld']}"
    if kind in ("cpf", "cnpj", "fcpf", "fcnpj"):
        return _star_digits(text)
    if kind == "phone":
        return _star_digits(text, keep=2)
    if kind == "card":
        digits = "".join(_DIGIT.findall(text))
        return _star_digits(text, keep=4) if 13 <= len(digits) <= 19 and _luhn(digits) else text
    if kind == "bare":
        return _mask_bare(text) or text
    return text  # "keep": a UUID or a date, consumed so no rule looks inside


#: every pattern needs one of these (a digit, ``@``, ``=``/``:`` of a key-value pair,
#: ``Bearer``, a JWT's ``eyJ``); most log text has none and is returned untouched, which
#: keeps masking off the step loop's profile
_MAYBE_SENSITIVE = re.compile(r"[0-9@=:]|bearer|eyj", re.IGNORECASE)


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    if not _MAYBE_SENSITIVE.search(text):
        return text
    return pattern.sub(_replace, text)


def mask_text(text: str) -> str:
    """``text`` with e-mails, phones, CPF/CNPJ, card numbers and secrets masked."""
    return _mask(text, _pattern(frozenset()))


# ---------------------------------------------------------------------------
# structured values


@functools.lru_cache(maxsize=4096)
def _normal(key: str) -> str:
    """Keys repeat endlessly in logs (``duration``, ``outcome``): normalise each once."""
    return key.lower().replace("_", "").replace("-", "").replace(" ", "")


@functools.lru_cache(maxsize=4096)
def _is_personal(key: str) -> bool:
    normal = _normal(key)
    return any(f in normal for f in _PERSONAL_FRAGMENTS)


@functools.lru_cache(maxsize=64)
def _secret_sets(secret_keys: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(k.lower() for k in secret_keys), frozenset(_normal(k) for k in secret_keys)


def _mask_number_string(text: str) -> str:
    """A value under a personal-data key: long digit runs are masked even if bare."""
    masked = _mask(text, _pattern(frozenset()))
    return _LONG_DIGITS.sub(lambda m: _mask_bare(m.group()) or "*" * len(m.group()), masked)


@dataclass(frozen=True, slots=True)
class Masker:
    """Masks log text and values; ``secret_keys`` adds configured secret variable names.

    ``Masker(frozenset({"pin"}))`` also masks ``pin=1234`` in text and the value of
    a ``"pin"`` key in data. Names are compared lowercased.
    """

    secret_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret_keys", frozenset(k.lower() for k in self.secret_keys))

    def text(self, text: str) -> str:
        """``text`` masked, configured secret names included (see :func:`mask_text`)."""
        return _mask(text, _pattern(self.secret_keys))

    def value(self, value: Any) -> Any:
        """``value`` masked, configured secret names included (see :func:`mask_value`)."""
        return _Walker(DEFAULT_SECRET_KEYS | self.secret_keys, _pattern(self.secret_keys)).walk(
            value, sensitive=False
        )


class _Walker:
    """One recursive walk; remembers the containers on the current path (cycles)."""

    def __init__(self, secret_keys: Collection[str], pattern: re.Pattern[str]) -> None:
        self.exact, self.normal = _secret_sets(frozenset(secret_keys))
        self.pattern = pattern
        self.path: set[int] = set()

    def is_secret(self, key: str) -> bool:
        normal = _normal(key)
        return (
            key.lower() in self.exact
            or normal in self.normal
            or normal.endswith(_CREDENTIAL_SUFFIXES)
        )

    def walk(self, value: Any, *, sensitive: bool) -> Any:
        if isinstance(value, str):
            return _mask_number_string(value) if sensitive else _mask(value, self.pattern)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return _mask_number_string(str(value)) if sensitive and abs(value) >= 10**7 else value
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            if id(value) in self.path:
                return "[cycle]"
            self.path.add(id(value))
            try:
                return self.container(value)
            finally:
                self.path.discard(id(value))
        return value

    def container(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    if self.is_secret(key):
                        masked = item if item is None else MASK
                    else:
                        masked = self.walk(item, sensitive=_is_personal(key))
                    out[_mask(key, self.pattern)] = masked
                else:
                    out[key] = self.walk(item, sensitive=False)
            return out
        items = [self.walk(item, sensitive=False) for item in value]
        return items if isinstance(value, list) else type(value)(items)


def mask_value(value: Any, *, secret_keys: Collection[str] = DEFAULT_SECRET_KEYS) -> Any:
    """A masked copy of ``value``: dicts, lists, tuples and sets are walked.

    A str key naming a secret (in ``secret_keys``, lowercased; or ending in
    token, secret, password, senha, api key) has its whole value replaced by
    ``[masked]`` (``None`` stays ``None``: it shows the value was absent). Other
    strings go through :func:`mask_text`; under a personal-data key (phone,
    telefone, celular, cpf, cnpj, card, ...) numbers of 8 or more digits are
    masked too, as strings. Other types are returned as they are; the input is
    never mutated.
    """
    return _Walker(secret_keys, _pattern(frozenset())).walk(value, sensitive=False)


#: the secret keys that name credentials rather than the contact's own data
_CREDENTIAL_KEYS = frozenset(
    {"authorization", "token", "access_token", "api_key", "apikey", "password", "secret", "senha"}
)
_CREDENTIAL_NORMALS = frozenset(_normal(k) for k in _CREDENTIAL_KEYS)


def _is_credential(key: str) -> bool:
    normal = _normal(key)
    return normal in _CREDENTIAL_NORMALS or normal.endswith(_CREDENTIAL_SUFFIXES)


def hide_credentials(value: Any) -> Any:
    """A copy of ``value`` with the values of credential keys (token, password, secret,
    api key, authorization, and keys ending so) replaced by ``[masked]``, and nothing
    else touched: for a trusted recipient that serves the contact (the handoff desk),
    who needs the contact's CPF, phone or e-mail as they are, but never a credential
    a flow fetched along the way."""
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and _is_credential(key) and item is not None
            else hide_credentials(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [hide_credentials(item) for item in value]
    return value


#: events whose context the engine builds from numbers and fixed words only (attempt,
#: duration, ok/error): nothing personal can be in them, so they skip the masker, which
#: would otherwise cost a sixth of the step throughput
ENGINE_BUILT_EVENTS = frozenset({"node.entered", "node.left"})


def masked_record(record: LogRecord) -> LogRecord:
    """A trail record with its context masked (the event name is a fixed string)."""
    if record.message in ENGINE_BUILT_EVENTS:
        return record
    return replace(record, context=mask_value(record.context))
