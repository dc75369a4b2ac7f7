"""Validation of a contact's answer to a question node.

Pure: takes the rule and the text, returns the value to store or the reason
it was refused. Contacts type on phones, so the rules are lenient about
spacing, case and punctuation where that cannot change the meaning.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from trilha.core.flow import AnswerRule

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


@dataclass(frozen=True, slots=True)
class Accepted:
    value: Any


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


def check_answer(rule: AnswerRule, text: str) -> Accepted | Refused:
    """Validate ``text`` against ``rule``; the accepted value is normalised."""
    answer = text.strip()
    if not answer:
        return Refused("empty answer")
    if rule.min_length is not None and len(answer) < rule.min_length:
        return Refused(f"shorter than {rule.min_length} characters")
    if rule.max_length is not None and len(answer) > rule.max_length:
        return Refused(f"longer than {rule.max_length} characters")
    match rule.kind:
        case "text":
            return Accepted(answer)
        case "number":
            return _number(rule, answer)
        case "email":
            return Accepted(answer.lower()) if _EMAIL.match(answer) else Refused("not an e-mail")
        case "phone":
            digits = re.sub(r"[\s().\-]", "", answer)
            plus = digits.startswith("+")
            digits = digits.removeprefix("+")
            if digits.isdigit() and 8 <= len(digits) <= 15:
                return Accepted(("+" if plus else "") + digits)
            return Refused("not a phone number")
        case "regex":
            assert rule.pattern is not None
            if re.fullmatch(rule.pattern, answer):
                return Accepted(answer)
            return Refused("does not match the expected format")
        case "choice":
            return _choice(rule, answer)
    return Refused(f"unknown kind {rule.kind}")  # pragma: no cover - Literal guards it


def _number(rule: AnswerRule, answer: str) -> Accepted | Refused:
    compact = answer.replace(" ", "")
    if not _NUMBER.match(compact):
        return Refused("not a number")
    compact = compact.replace(",", ".")
    value: int | float = float(compact) if "." in compact else int(compact)
    if rule.min is not None and value < rule.min:
        return Refused(f"less than {rule.min:g}")
    if rule.max is not None and value > rule.max:
        return Refused(f"greater than {rule.max:g}")
    return Accepted(value)


def fold(text: str) -> str:
    """Case- and accent-insensitive form, so 'Não' matches 'nao'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(" .!")


def _choice(rule: AnswerRule, answer: str) -> Accepted | Refused:
    options = rule.choice_options()
    folded = fold(answer)
    if folded.isdigit() and 1 <= int(folded) <= len(options):
        return Accepted(options[int(folded) - 1].value)
    for option in options:
        names = [option.value, *([option.label] if option.label else []), *option.synonyms]
        if folded in (fold(n) for n in names):
            return Accepted(option.value)
    return Refused("not one of the options")
