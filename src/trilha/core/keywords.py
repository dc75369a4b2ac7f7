"""Keywords a contact may type anywhere: a flow's interrupts and an institution's triggers.
Pure: no I/O.

A keyword matches whole words, case- and accent-insensitively (:func:`trilha.core.text.fold`,
the same folding answers are compared with): ``atendente`` matches "Quero um ATENDENTE!"
but not "atendentes"; ``falar com humano`` matches those three words in a row. Words are
runs of letters and digits, so punctuation and emoji around them do not matter.

When a message holds several keywords, the one with the most words wins (``menu
principal`` over ``menu``), then the one listed first: the order an author writes is
the order of precedence.

A message is at most 10,000 characters and a set of keywords a few thousand, so a match
walks the message's words once and, at each, only the keywords that begin with that word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar

from pydantic import AfterValidator, Field

from trilha.core.text import fold

__all__ = [
    "MAX_KEYWORDS",
    "MAX_KEYWORD_CHARS",
    "Keyword",
    "KeywordHit",
    "KeywordIndex",
    "matchable_text",
    "repeated_keywords",
    "words",
]

#: keywords in one trigger or one interrupt
MAX_KEYWORDS: Final = 50
#: characters in one keyword
MAX_KEYWORD_CHARS: Final = 100

_WORD = re.compile(r"\w+")
T = TypeVar("T")


def words(text: str) -> tuple[str, ...]:
    """The folded words of ``text``, in order: what keywords are compared on."""
    return tuple(_WORD.findall(fold(text)))


def _has_words(value: str) -> str:
    if not words(value):
        raise ValueError(f"keyword {value!r} has no letters or digits")
    return value


#: a keyword as authors write it: one or more words, at most 100 characters
Keyword = Annotated[
    str,
    Field(min_length=1, max_length=MAX_KEYWORD_CHARS),
    AfterValidator(_has_words),
]


def matchable_text(text: str, content: Mapping[str, Any] | None) -> str:
    """The words of a contact's message that keywords are looked for in: its text (for a
    button or list reply, the title tapped, else the reply's id), a photo's caption; a
    shared place has none. The plain rendering of a photo without a caption is
    ``[image]``, which must not match a keyword ``image``."""
    kind = (content or {}).get("type", "text")
    if kind == "location":
        return ""
    if kind == "media":
        media = (content or {}).get("media")
        caption = media.get("caption") if isinstance(media, Mapping) else None
        return caption if isinstance(caption, str) else ""
    return text


@dataclass(frozen=True, slots=True)
class KeywordHit(Generic[T]):
    """The keyword a message matched (as its author wrote it) and what it stands for."""

    keyword: str
    value: T


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    phrase: tuple[str, ...]
    rank: int
    keyword: str
    value: T


class KeywordIndex(Generic[T]):
    """Keywords, each standing for a value (a trigger, an interrupt), ready to be matched.

    Built once per trigger set or flow version and kept: matching a message is then a
    walk of its words."""

    def __init__(self, entries: Iterable[tuple[str, T]]) -> None:
        self._by_first: dict[str, list[_Entry[T]]] = {}
        for rank, (keyword, value) in enumerate(entries):
            phrase = words(keyword)
            if phrase:
                entry = _Entry(phrase, rank, keyword, value)
                self._by_first.setdefault(phrase[0], []).append(entry)

    def __bool__(self) -> bool:
        return bool(self._by_first)

    def match(self, text: str) -> KeywordHit[T] | None:
        """The keyword ``text`` holds as whole words: the longest, then the first listed."""
        if not self._by_first or not text:
            return None
        said = words(text)
        best: _Entry[T] | None = None
        for i, word in enumerate(said):
            for entry in self._by_first.get(word, ()):
                size = len(entry.phrase)
                if said[i : i + size] != entry.phrase:
                    continue
                if best is None or (-size, entry.rank) < (-len(best.phrase), best.rank):
                    best = entry
        return None if best is None else KeywordHit(best.keyword, best.value)


def repeated_keywords(
    groups: Sequence[Sequence[str]],
) -> Iterator[tuple[tuple[int, int], tuple[int, int], str]]:
    """A keyword (as folded words) in two groups (two triggers, two interrupts): the
    first place it is, ``(group, position)``, the place it is again, and the keyword as
    written there. Which of the two a message would mean is ambiguous, so each repeat is
    an error naming both places. A repeat inside one group is harmless and passes."""
    seen: dict[tuple[str, ...], tuple[int, int]] = {}
    for g, keywords in enumerate(groups):
        for k, keyword in enumerate(keywords):
            phrase = words(keyword)
            if not phrase:
                continue
            first = seen.get(phrase)
            if first is None:
                seen[phrase] = (g, k)
            elif first[0] != g:
                yield first, (g, k), keyword
