"""Triggers: which flow a contact's message starts when nothing runs in its conversation.
Pure: no I/O.

An institution's triggers are a list, in order of precedence::

    [{"keywords": ["oi", "menu"], "flowId": "clinic"},
     {"keywords": ["atendente"], "flowId": "desk", "interrupt": true},
     {"default": true, "flowId": "welcome"}]

A message to a conversation with no active execution starts the flow of the trigger
whose keyword it holds (whole words, case- and accent-insensitive:
:mod:`trilha.core.keywords`), else the default trigger's; with neither, nothing starts.
A trigger with ``interrupt`` also starts its flow while another execution runs in the
conversation, replacing it. ``flowId`` names a flow as ``POST /v1/executions`` does:
the institution's own flow of that name, else the shared one, so a trigger never reaches
another institution's flow (a name has no owner part).

The rules, checked wherever triggers come from (``PUT /v1/triggers``, ``[[triggers]]``
in ``trilha.toml``): each trigger has keywords or is the default, not both; at most one
default; a keyword in two triggers is an error naming both; bounded counts and lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from pydantic import Field, model_validator

from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.keywords import MAX_KEYWORDS, Keyword, KeywordIndex, repeated_keywords
from trilha.core.wire import WireModel

__all__ = [
    "MAX_TRIGGERS",
    "TRIGGER_META",
    "Trigger",
    "TriggerMatch",
    "TriggerSet",
    "trigger_problems",
]

#: triggers one institution may have
MAX_TRIGGERS: Final = 100
#: the execution ``meta`` key holding the message that started it (``sys.trigger``)
TRIGGER_META: Final = "trigger"


class Trigger(WireModel):
    """Start ``flowId`` when a contact's message holds one of ``keywords`` (or, for the
    default trigger, when no other trigger's keyword is in it)."""

    keywords: list[Keyword] = Field(
        default_factory=list,
        max_length=MAX_KEYWORDS,
        description="Whole words, matched case- and accent-insensitively; at most 50 of at"
        " most 100 characters each.",
    )
    flow_id: str = Field(
        min_length=1,
        max_length=200,
        pattern=FLOW_ID_PATTERN,
        description="The institution's own flow of that name, else the shared one.",
    )
    default: bool = Field(
        default=False, description="Start this flow when no trigger's keyword matches."
    )
    interrupt: bool = Field(
        default=False,
        description="Also start it while another execution runs in the conversation,"
        " replacing (cancelling) that one.",
    )

    @model_validator(mode="after")
    def _keywords_or_default(self) -> Self:
        if self.default and self.keywords:
            raise ValueError(
                "a default trigger has no keywords: it starts its flow when no keyword matches"
            )
        if not self.default and not self.keywords:
            raise ValueError('a trigger needs keywords, or "default": true')
        if self.default and self.interrupt:
            raise ValueError(
                "a default trigger cannot interrupt: it would replace every running"
                " conversation on every message"
            )
        return self

    def wire(self) -> dict[str, Any]:
        """As stored and shown: camelCase, the defaults left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def trigger_problems(
    triggers: Sequence[Trigger], place: Callable[[int], str] = "[{}]".format
) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for what is wrong across the triggers (each one's own shape is
    its model's): more than :data:`MAX_TRIGGERS`, a second default, a keyword in two
    triggers (naming both). ``place`` names the trigger at an index as the caller's
    reader knows it (``body[2]``, ``triggers[7]``)."""
    if len(triggers) > MAX_TRIGGERS:
        yield place(MAX_TRIGGERS), f"{len(triggers)} triggers; the limit is {MAX_TRIGGERS}"
    defaults = [i for i, t in enumerate(triggers) if t.default]
    for i in defaults[1:]:
        yield (
            f"{place(i)}.default",
            f"a second default trigger ({place(defaults[0])} is one): at most one",
        )
    for first, again, keyword in repeated_keywords([t.keywords for t in triggers]):
        yield (
            f"{place(again[0])}.keywords[{again[1]}]",
            f"keyword {keyword!r} is also in {place(first[0])}.keywords[{first[1]}]: a"
            " keyword may start one flow only",
        )


@dataclass(frozen=True, slots=True)
class TriggerMatch:
    """The trigger a message matched, and the keyword (``None``: the default trigger)."""

    trigger: Trigger
    position: int
    keyword: str | None

    def wire(self) -> dict[str, Any]:
        """What the API answers and the trail records about the match."""
        return {
            "flowId": self.trigger.flow_id,
            "keyword": self.keyword,
            "default": self.trigger.default,
            "interrupt": self.trigger.interrupt,
            "position": self.position,
        }


class TriggerSet:
    """One institution's triggers, checked, with their keywords indexed for matching."""

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        self.triggers = list(triggers)
        positions = {id(t): i for i, t in enumerate(self.triggers)}
        self._positions = positions
        self._all = KeywordIndex((k, t) for t in self.triggers for k in t.keywords)
        self._interrupting = KeywordIndex(
            (k, t) for t in self.triggers if t.interrupt for k in t.keywords
        )
        self._default = next((t for t in self.triggers if t.default), None)

    def __bool__(self) -> bool:
        return bool(self.triggers)

    @property
    def interrupts(self) -> bool:
        """Whether any trigger may replace a running execution."""
        return bool(self._interrupting)

    def match(self, text: str) -> TriggerMatch | None:
        """What a message to an idle conversation starts: a keyword's trigger, else the
        default one, else nothing."""
        hit = self._all.match(text)
        if hit is not None:
            return TriggerMatch(hit.value, self._positions[id(hit.value)], hit.keyword)
        if self._default is not None:
            return TriggerMatch(self._default, self._positions[id(self._default)], None)
        return None

    def interrupt(self, text: str) -> TriggerMatch | None:
        """What a message to a conversation with a running execution starts instead of
        it: an interrupting trigger's keyword, else nothing."""
        hit = self._interrupting.match(text)
        if hit is None:
            return None
        return TriggerMatch(hit.value, self._positions[id(hit.value)], hit.keyword)
