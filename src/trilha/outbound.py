"""What a person holding a conversation sends the contact, structured: the rich outbound
form channels receive as ``content`` (:mod:`trilha.core.content`: ``type`` ``text``,
``buttons``, ``list``, ``media`` or ``location``, with those fields), checked at the door
against WhatsApp Cloud API's limits as a flow's messages are when it is published.

A flow's message is written once and rendered (templates, languages, ``rowsFrom``); a
person's is already what it says, so it is taken as rendered: plain texts, no templates,
no map of languages. :meth:`OutboundContent.said` gives it in the form the outbox keeps
(:class:`~trilha.core.content.Said`: its plain text and content), degraded for what the
channel cannot show exactly as the bot's messages are.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from trilha.api.wire import storable
from trilha.core.content import (
    MAX_BODY,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_FOOTER,
    MAX_HEADER,
    MAX_LIST_BUTTON,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_ROWS,
    MAX_SECTION_TITLE,
    MAX_SECTIONS,
    Said,
    degrade,
    plain,
)
from trilha.core.wire import WireModel
from trilha.inbound import Caption, Filename, HttpUrl, PlaceText

__all__ = ["AgentText", "OutboundContent"]


#: a person's message as plain text: WhatsApp's 4,096 characters
AgentText = Annotated[str, Field(min_length=1, max_length=MAX_BODY), AfterValidator(storable)]
_ButtonId = Annotated[str, Field(min_length=1, max_length=MAX_BUTTON_ID), AfterValidator(storable)]
_ButtonTitle = Annotated[
    str, Field(min_length=1, max_length=MAX_BUTTON_TITLE), AfterValidator(storable)
]
_RowId = Annotated[str, Field(min_length=1, max_length=MAX_ROW_ID), AfterValidator(storable)]
_RowTitle = Annotated[str, Field(min_length=1, max_length=MAX_ROW_TITLE), AfterValidator(storable)]
_RowDescription = Annotated[str, Field(max_length=MAX_ROW_DESCRIPTION), AfterValidator(storable)]
_SectionTitle = Annotated[str, Field(max_length=MAX_SECTION_TITLE), AfterValidator(storable)]
_ListButton = Annotated[
    str, Field(min_length=1, max_length=MAX_LIST_BUTTON), AfterValidator(storable)
]
_Header = Annotated[str, Field(max_length=MAX_HEADER), AfterValidator(storable)]
_Footer = Annotated[str, Field(max_length=MAX_FOOTER), AfterValidator(storable)]
_Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(storable)]

#: the field each type carries (the others refuse it)
_FIELD: Final = {"buttons": "buttons", "list": "list", "media": "media", "location": "location"}


class ButtonOut(WireModel):
    id: _ButtonId = Field(description="What a press carries back: at most 256 characters.")
    title: _ButtonTitle = Field(description="What the button shows: at most 20 characters.")


class RowOut(WireModel):
    id: _RowId = Field(description="What picking the row carries back: at most 200 characters.")
    title: _RowTitle = Field(description="At most 24 characters.")
    description: _RowDescription | None = Field(default=None, description="At most 72.")


class SectionOut(WireModel):
    title: _SectionTitle | None = Field(
        default=None, description="At most 24 characters; needed when there are several."
    )
    rows: list[RowOut] = Field(min_length=1, max_length=MAX_ROWS)


class ListOut(WireModel):
    button: _ListButton = Field(description="The label opening the list: at most 20.")
    sections: list[SectionOut] = Field(min_length=1, max_length=MAX_SECTIONS)


class MediaOut(WireModel):
    kind: Literal["image", "video", "audio", "document", "sticker"]
    url: HttpUrl = Field(description="An http(s) URL the platform fetches.")
    caption: Caption | None = None
    filename: Filename | None = None


class LocationOut(WireModel):
    latitude: float = Field(strict=True, ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(strict=True, ge=-180, le=180, allow_inf_nan=False)
    name: PlaceText | None = None
    address: PlaceText | None = None


class OutboundContent(WireModel):
    """A structured message as channels receive it; ``type`` says which field it carries."""

    type: Literal["text", "buttons", "list", "media", "location"] = Field(
        description="`text`, `buttons` (1 to 10; more than 3 are shown as a list),"
        " `list` (at most 10 rows in all), `media` or `location`."
    )
    text: _Body | None = Field(
        default=None,
        description="The message's text: required (not blank) for `text`, `buttons` and"
        " `list`; optional with media or a location. At most 4,096 characters.",
    )
    header: _Header | None = Field(default=None, description="Buttons or list only: at most 60.")
    footer: _Footer | None = Field(default=None, description="Buttons or list only: at most 60.")
    buttons: list[ButtonOut] | None = Field(default=None, min_length=1, max_length=MAX_ROWS)
    list_: ListOut | None = Field(default=None, alias="list")
    media: MediaOut | None = None
    location: LocationOut | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        given: dict[str, object] = {"buttons": self.buttons, "list": self.list_}
        given |= {"media": self.media, "location": self.location}
        for name, value in given.items():
            if value is not None and _FIELD[name] != self.type:
                raise ValueError(f"{name}: only for type '{name}'")
        if self.type != "text" and given[self.type] is None:
            raise ValueError(f"{self.type}: required when type is '{self.type}'")
        if self.type in ("text", "buttons", "list") and not (self.text or "").strip():
            raise ValueError(f"text: required (not blank) when type is '{self.type}'")
        if self.type not in ("buttons", "list") and (self.header or self.footer):
            raise ValueError("header and footer: only for type 'buttons' or 'list'")
        ids = [b.id for b in self.buttons or ()]
        if self.list_ is not None:
            rows = [row for section in self.list_.sections for row in section.rows]
            if len(rows) > MAX_ROWS:
                raise ValueError(f"list: {len(rows)} rows; at most {MAX_ROWS} in all")
            if len(self.list_.sections) > 1 and any(s.title is None for s in self.list_.sections):
                raise ValueError("list: every section needs a title when there are several")
            ids = [row.id for row in rows]
        if len(set(ids)) != len(ids):
            raise ValueError("every button's or row's id must be different")
        return self

    def said(self, renders: frozenset[str]) -> Said:
        """The message as the outbox keeps it (plain text and content), degraded for a
        channel that shows only ``renders``."""
        content = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if self.type == "text":
            return Said(str(content["text"]))
        content.setdefault("text", "")
        return degrade(Said(plain(content), content), renders)
