"""What a contact sends, structured: a text, a tapped button, a list choice, a photo or
document, a shared location. One model, :class:`InboundContent`, checks it at the door
for both ways a reply comes in (the API's ``POST /v1/conversations/{id}/messages``
body extends it; ``trilha send`` builds it from its flags), so the two cannot accept
different things.

What it gives the store is two readings of the same message: :meth:`~InboundContent.content`,
the structured form kept in ``inbox.content`` (what a question of kind ``media`` or
``location`` saves, and what a button reply is matched by), and
:meth:`~InboundContent.plain_text`, the ``text`` column every reader of text alone keeps
using (the transcript, the terminal, a question of kind ``text``). A plain text with no
language has no structured form (``None``), exactly as before.

The limits are WhatsApp Cloud API's (:mod:`trilha.core.content` keeps them, for both
directions); coordinates are bounded to the globe and URLs to http(s).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from trilha.api.wire import storable
from trilha.core.content import LANGUAGE_TAG, MAX_CAPTION, MAX_FILENAME, MAX_URL
from trilha.core.wire import WireModel

__all__ = [
    "INBOUND_TYPES",
    "MAX_TEXT",
    "InboundContent",
    "Language",
    "LocationIn",
    "MediaIn",
    "language_tag",
    "with_language",
]

#: a message's text; WhatsApp's own limit is 4,096 characters
MAX_TEXT: Final = 10_000
#: a button's or row's id, as WhatsApp bounds a button's
MAX_REPLY_ID: Final = 256
#: a place's name or address
MAX_PLACE_TEXT: Final = 1_000
#: RFC 5646's advice for the longest tag an application need keep
MAX_LANGUAGE_TAG: Final = 35
#: RFC 6838 bounds each of a media type's names to 127 characters
MAX_MIME_TYPE: Final = 255
#: ``type/subtype`` (RFC 6838 names), then any ``; name=value`` parameters: WhatsApp
#: sends a voice note as ``audio/ogg; codecs=opus``
MIME_TYPE: Final = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r'(?:[ \t]*;[ \t]*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|"[^"\\\r\n]*"))*'
)

InboundType = Literal["text", "button", "list", "media", "location"]
#: the message types a contact may send
INBOUND_TYPES: Final[tuple[str, ...]] = get_args(InboundType)


def language_tag(value: str) -> str:
    """``value`` if it is a BCP 47 language tag as flows key their texts by, else
    :class:`ValueError` saying what is expected."""
    if len(value) > MAX_LANGUAGE_TAG or re.fullmatch(LANGUAGE_TAG, value) is None:
        raise ValueError('must be a BCP 47 language tag such as "pt-BR" or "en"')
    return value


def _mime_type(value: str) -> str:
    if MIME_TYPE.fullmatch(value) is None:
        raise ValueError(
            'must be a media type, type/subtype such as "image/jpeg" or "application/pdf"'
        )
    return value


#: a BCP 47 language tag, as flows key their texts by (``pt-BR``, ``en``)
Language = Annotated[
    str,
    Field(
        max_length=MAX_LANGUAGE_TAG,
        description='A BCP 47 language tag ("pt-BR", "en"): sets `contact.language`, which'
        " chooses the flow's texts.",
    ),
    AfterValidator(language_tag),
]


def _http_url(value: str) -> str:
    """A link the platform can fetch: http(s), with a host, no spaces or control characters."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("an http(s) URL has no spaces or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValueError("must be an http(s) URL with a host")
    return value


HttpUrl = Annotated[str, Field(min_length=1, max_length=MAX_URL), AfterValidator(_http_url)]
# texts bounded before their Unicode check, so a long one is named by its limit
Caption = Annotated[str, Field(max_length=MAX_CAPTION), AfterValidator(storable)]
Filename = Annotated[str, Field(min_length=1, max_length=MAX_FILENAME), AfterValidator(storable)]
PlaceText = Annotated[str, Field(max_length=MAX_PLACE_TEXT), AfterValidator(storable)]
MessageText = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(storable)]
ReplyId = Annotated[str, Field(min_length=1, max_length=MAX_REPLY_ID), AfterValidator(storable)]
MimeType = Annotated[str, Field(max_length=MAX_MIME_TYPE), AfterValidator(_mime_type)]


class MediaIn(WireModel):
    """A photo, video, audio, document or sticker the contact sent, by link."""

    kind: Literal["image", "video", "audio", "document", "sticker"] = Field(
        description="What the file is."
    )
    url: HttpUrl = Field(
        description="Where the platform keeps it: an http(s) URL, at most 2,000 characters."
    )
    mime_type: MimeType | None = Field(
        default=None,
        description='Its media type, `type/subtype` ("image/jpeg", "application/pdf",'
        ' "audio/ogg; codecs=opus"): what a question\'s `accept` patterns match.',
    )
    caption: Caption | None = Field(
        default=None, description="The text sent with it: at most 1,024 characters."
    )
    filename: Filename | None = Field(
        default=None, description="A document's file name: at most 240 characters."
    )


class LocationIn(WireModel):
    """A place the contact shared."""

    # strict: a number, never a string or a boolean read as one
    latitude: float = Field(
        strict=True, ge=-90, le=90, allow_inf_nan=False, description="-90 to 90."
    )
    longitude: float = Field(
        strict=True, ge=-180, le=180, allow_inf_nan=False, description="-180 to 180."
    )
    name: PlaceText | None = Field(
        default=None, description="The place's name: at most 1,000 characters."
    )
    address: PlaceText | None = Field(
        default=None, description="Its address: at most 1,000 characters."
    )


#: the field only these types carry (the others refuse it)
_ONLY_FOR: Final[dict[str, tuple[str, ...]]] = {
    "replyId": ("button", "list"),
    "media": ("media",),
    "location": ("location",),
}
#: the field each type needs
_NEEDS: Final[dict[str, str]] = {
    "text": "text",
    "button": "replyId",
    "list": "replyId",
    "media": "media",
    "location": "location",
}


class InboundContent(WireModel):
    """What the contact sent: its ``type`` says which of the other fields it carries."""

    type: InboundType = Field(
        default="text",
        description="`text` (needs `text`), `button` or `list` (a reply: needs `replyId`,"
        " with the button's or row's title as `text`), `media` (needs `media`) or `location`"
        " (needs `location`).",
    )
    text: MessageText | None = Field(
        default=None,
        description="What the contact wrote; for `button` and `list`, the title tapped."
        " Required for `text`; stored as a plain rendering when absent (the reply's id,"
        " the caption or `[image]`, the place's name and address or `lat,lon`).",
    )
    reply_id: ReplyId | None = Field(
        default=None,
        description="`button` and `list` only: the id of the button or row tapped, what a"
        " choice question matches first.",
    )
    media: MediaIn | None = Field(default=None, description="`media` only: the file.")
    location: LocationIn | None = Field(default=None, description="`location` only: the place.")
    language: Language | None = Field(
        default=None,
        description='The contact\'s language as the platform knows it (BCP 47: "pt-BR",'
        ' "en"): sets `contact.language`, so the flow\'s next texts speak it.',
    )

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        """Each field where its type has it: named (``replyId``, ``media``...) when missing
        or out of place, so the caller reads which field to fix."""
        given: dict[str, Any] = {"text": self.text, "replyId": self.reply_id}
        given |= {"media": self.media, "location": self.location}
        errors: list[InitErrorDetails] = []
        needed = _NEEDS[self.type]
        if given[needed] is None:
            errors.append(
                _error(
                    needed, "missing_for_type", f"required when type is '{self.type}'", self.type
                )
            )
        for name, types in _ONLY_FOR.items():
            if given[name] is not None and self.type not in types:
                only = " or ".join(f"'{t}'" for t in types)
                errors.append(_error(name, "not_for_type", f"only for type {only}", given[name]))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def content(self) -> dict[str, Any] | None:
        """The structured form the store keeps (``inbox.content``): the wire names of the
        fields given; ``None`` for a plain text with no language (stored as before)."""
        if self.type == "text" and self.language is None:
            return None
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            include={"type", "text", "reply_id", "media", "location", "language"},
        )

    def plain_text(self) -> str:
        """The ``text`` column: what the contact wrote, else a rendering every reader of
        text alone can show (and a text question can match)."""
        if self.text is not None:
            return self.text
        if self.reply_id is not None:
            return self.reply_id
        if self.media is not None:
            return self.media.caption or f"[{self.media.kind}]"
        if self.location is not None:
            place = self.location
            named = [part for part in (place.name, place.address) if part]
            return ", ".join(named) if named else f"{place.latitude},{place.longitude}"
        return ""  # pragma: no cover - _fits_type requires one of them


def _error(field: str, kind: str, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(kind, message), loc=(field,), input=_shown(value)
    )


def _shown(value: Any) -> Any:
    return value.model_dump(by_alias=True) if isinstance(value, WireModel) else value


def with_language(variables: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The start variables with ``language`` as ``contact.language`` (other ``contact``
    fields kept; the explicit language wins over one in the variables). A ``contact``
    that is not an object cannot take it: :class:`ValueError` naming it."""
    if language is None:
        return variables
    contact = variables.get("contact", {})
    if not isinstance(contact, dict):
        raise ValueError("variables.contact must be an object to take the language")
    return {**variables, "contact": {**contact, "language": language}}
