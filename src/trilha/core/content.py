"""What a message says beyond its text: buttons, lists, media, locations, languages.

A node's content is written once by the flow's author and shown by channels that can
render very different things (WhatsApp shows reply buttons and lists; a terminal or a
plain SMS gateway shows text). So this module keeps three steps apart, all pure:

1. **The models** a node carries (:class:`Button`, :class:`ListSpec`, :class:`Media`,
   :class:`Location`, texts that may be a map of language tags) and the limits
   WhatsApp's Cloud API documents, checked when a flow is published
   (:func:`content_problems`, each problem with its path).
2. **Rendering** (:func:`render_content`): templates filled in, the contact's language
   chosen, a list's rows built from a variable (``rowsFrom``). A limit that only a
   rendered value can break (a templated title too long) is truncated with an
   ellipsis and noted, never a failed step: a conversation must not stop because a
   service returned a long name.
3. **Degradation** (:func:`degrade`): what the channel cannot show is replaced the
   same way every time (buttons -> a list -> numbered text options that a reply by
   number matches; media -> caption and URL; a location -> name, address and a map
   link), and noted so the trail says so.

The rendered form is the wire form platforms receive as ``content``; :func:`plain`
is its text-only rendering, the ``text`` every old reader keeps getting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, WithJsonSchema, field_validator

from trilha.core.schema_help import described
from trilha.core.template_messages import TemplateMessage, template_problems, template_strings
from trilha.core.wire import WireModel

__all__ = [
    "CAPABILITIES",
    "LOCALIZED_TAGS",
    "Button",
    "ContentFields",
    "ListSpec",
    "Localized",
    "Location",
    "Media",
    "Said",
    "choose_language",
    "content_problems",
    "degrade",
    "localized_texts",
    "options_of",
    "plain",
    "render_content",
]

#: what a channel may be able to show besides text
CAPABILITIES: Final = frozenset({"buttons", "list", "media", "location"})

# WhatsApp Cloud API's documented limits (interactive and media messages)
MAX_BODY: Final = 4_096
MAX_BUTTONS: Final = 3
MAX_BUTTON_ID: Final = 256
MAX_BUTTON_TITLE: Final = 20
MAX_ROWS: Final = 10
MAX_SECTIONS: Final = 10
MAX_ROW_TITLE: Final = 24
MAX_ROW_DESCRIPTION: Final = 72
MAX_ROW_ID: Final = 200
MAX_LIST_BUTTON: Final = 20
MAX_SECTION_TITLE: Final = 24
MAX_HEADER: Final = 60
MAX_FOOTER: Final = 60
MAX_CAPTION: Final = 1_024
MAX_FILENAME: Final = 240
MAX_URL: Final = 2_000
#: what a template may be before rendering (rendering may grow or shrink it)
MAX_TEMPLATE: Final = 4_096
ELLIPSIS: Final = "…"

LANGUAGE_TAG: Final = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}$"
_LANGUAGE_TAG_RE: Final = re.compile(LANGUAGE_TAG)


def _language_tag(value: str) -> str:
    """A BCP 47 tag as platforms send them (``pt-BR``, ``en``, ``es-419``); the message
    names the key, since pydantic's would only show the pattern."""
    if len(value) > 35 or not _LANGUAGE_TAG_RE.match(value):
        raise ValueError(f"'{value[:40]}' is not a language tag such as 'pt-BR' or 'en'")
    return value


LanguageTag = Annotated[
    str,
    AfterValidator(_language_tag),
    WithJsonSchema({"type": "string", "pattern": LANGUAGE_TAG, "maxLength": 35}),
]
Template = Annotated[str, Field(max_length=MAX_TEMPLATE)]

#: the tags pydantic puts in an error's location for :data:`Localized`'s two forms;
#: :func:`trilha.core.flow.format_loc` leaves them out, so a problem reads
#: ``nodes[0].text.en``, not ``nodes[0].text.dict[constrained-str,constrained-str].en``
LOCALIZED_TAGS: Final = frozenset({"<text>", "<languages>"})


def _localized_form(value: Any) -> str | None:
    """Which form a value is, so only that form is validated and reported: a plain
    union would report a too-long text twice (as a string, and as not a map)."""
    if isinstance(value, str):
        return "<text>"
    if isinstance(value, Mapping):
        return "<languages>"
    return None


#: a text, or a map of language tags to texts (``{"pt-BR": "Olá", "en": "Hello"}``)
Localized = Annotated[
    Annotated[Template, Tag("<text>")]
    | Annotated[
        dict[LanguageTag, Template], Field(min_length=1, max_length=50), Tag("<languages>")
    ],
    Discriminator(
        _localized_form,
        custom_error_type="localized",
        custom_error_message="a text, or a map of language tags to texts",
    ),
]

#: a list's button when buttons are shown as a list, in the contact's language
_OPTIONS_LABEL: Final = {"pt": "Opções", "es": "Opciones", "en": "Options"}


# ----------------------------------------------------------------------------- models


class _Option(WireModel):
    """What a contact may pick: a typed reply matches its ``synonyms`` too."""

    synonyms: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="Other words a typed reply may use to pick this option (compared"
        " ignoring case and accents): at most 50, each at most 200 characters.",
        examples=[["yes", "sure"], ["tomorrow morning"]],
    )


class Button(_Option):
    """One reply button; a reply matches its ``id``, then its ``title`` and ``synonyms``."""

    model_config = described(
        "One reply button under the text. A reply matches the button's `id`, its `title`"
        " or its `synonyms`; a channel that cannot show buttons shows them as a list, or as"
        " numbered options the contact answers by number.",
        {"id": "yes", "title": "Yes, confirm"},
        {"id": "no", "title": {"pt-BR": "Não", "en": "No"}, "synonyms": ["nope"]},
        title="Button",
    )

    id: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="What a press of the button carries back, and what a `choice` question"
        " saves: at most 256 characters (a template); unique among the node's buttons.",
        examples=["yes", "slot-{{slot.id}}"],
    )
    title: Localized = Field(
        description="What the button shows: at most 20 characters (a template, or a map of"
        " languages). A literal title past 20 is refused when the flow is published; a"
        " rendered one is cut with an ellipsis.",
        examples=["Yes, confirm", {"pt-BR": "Sim", "en": "Yes"}],
    )


class Row(_Option):
    """One row of a list message."""

    model_config = described(
        "One option of a list message: a title and an optional second line. A reply"
        " matches its `id`, its `title` or its `synonyms`.",
        {"id": "cardio", "title": "Cardiology", "description": "Dr. Ana, Mondays"},
        {"id": "derma", "title": {"pt-BR": "Dermatologia", "en": "Dermatology"}},
        title="List row",
    )

    id: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="What picking the row carries back, and what a `choice` question saves:"
        " at most 200 characters, unique in the list (a template).",
        examples=["cardio", "{{doctor.id}}"],
    )
    title: Localized = Field(
        description="What the row shows: at most 24 characters (a template, or a map of"
        " languages); a rendered one past it is cut with an ellipsis.",
        examples=["Cardiology", {"pt-BR": "Cardiologia", "en": "Cardiology"}],
    )
    description: Localized | None = Field(
        default=None,
        description="A second line under the title: at most 72 characters.",
        examples=["Dr. Ana, Mondays and Thursdays"],
    )


class RowsFrom(WireModel):
    """Rows built from a list variable: one per item, ``this`` being the item."""

    model_config = described(
        "Rows built from a list variable while the flow runs: one row per item (the first"
        " 10), `this` being the item. A missing or empty list leaves the section out.",
        {"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"},
        {
            "items": "doctors",
            "id": "{{this.id}}",
            "title": "{{this.name}}",
            "description": "{{this.specialty}}",
        },
        title="Rows from a variable",
    )

    items: str = Field(
        min_length=1,
        max_length=2_000,
        description="An expression giving the list, such as `slots` or `slots.morning`;"
        " checked when the flow is published.",
        examples=["slots", "slots.morning"],
    )
    id: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="Each row's id, a template such as `{{this.id}}` (`this` is the item,"
        " `@index` counts from 0, `@number` from 1).",
        examples=["{{this.id}}", "slot-{{@number}}"],
    )
    title: Localized = Field(
        description="Each row's title, such as `{{this.label}}`: cut to 24 characters.",
        examples=["{{this.label}}", {"pt-BR": "{{this.rotulo}}", "en": "{{this.label}}"}],
    )
    description: Localized | None = Field(
        default=None,
        description="Each row's description: cut to 72 characters.",
        examples=["{{this.doctor}}"],
    )


class Section(WireModel):
    """A titled group of rows; its rows are listed, or built from a variable."""

    model_config = described(
        "A group of rows under an optional heading: its rows written out (`rows`), or"
        " built from a list variable (`rowsFrom`), not both.",
        {"title": "Specialties", "rows": [{"id": "cardio", "title": "Cardiology"}]},
        {"rowsFrom": {"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"}},
        title="List section",
    )

    title: Localized | None = Field(
        default=None,
        description="The section's heading: at most 24 characters; needed when the list has"
        " several sections.",
        examples=["Morning", {"pt-BR": "Manhã", "en": "Morning"}],
    )
    rows: list[Row] = Field(
        default_factory=list,
        max_length=100,
        description="The section's rows (at most 10 rows in the whole list).",
        examples=[
            [{"id": "cardio", "title": "Cardiology"}, {"id": "derma", "title": "Dermatology"}]
        ],
    )
    rows_from: RowsFrom | None = Field(
        default=None,
        description="Build the rows from a list variable instead (one row per item; only"
        " the first 10 of the list are shown).",
        examples=[{"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"}],
    )


class ListSpec(WireModel):
    """A list message: a button that opens sections of rows (at most 10 rows in all)."""

    model_config = described(
        "A list message: a button that opens sections of rows, at most 10 rows in all."
        " A channel that cannot show lists shows numbered options instead.",
        {
            "button": "See specialties",
            "sections": [{"rows": [{"id": "cardio", "title": "Cardiology"}]}],
        },
        {
            "button": "Pick a time",
            "sections": [
                {
                    "title": "Available",
                    "rowsFrom": {"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"},
                }
            ],
        },
        title="List",
    )

    button: Localized = Field(
        description="The label of the button opening the list: at most 20 characters.",
        examples=["See options", {"pt-BR": "Ver opções", "en": "See options"}],
    )
    sections: list[Section] = Field(
        min_length=1,
        max_length=100,
        description="Groups of rows: at most 10 sections, 10 rows in all; with several,"
        " each needs a `title`.",
        examples=[[{"rows": [{"id": "cardio", "title": "Cardiology"}]}]],
    )


class Media(WireModel):
    """An image, video, audio, document or sticker, sent by link."""

    model_config = described(
        "An image, video, audio, document or sticker, sent by link. A channel that cannot"
        " show media sends its caption and link as text.",
        {"kind": "image", "url": "https://example.com/map.png", "caption": "How to find us"},
        {"kind": "document", "url": "{{invoice.url}}", "filename": "invoice.pdf"},
        title="Media",
    )

    kind: Literal["image", "video", "audio", "document", "sticker"] = Field(
        description="What the link is: `image`, `video`, `audio`, `document` or `sticker`.",
        examples=["image", "document"],
    )
    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="Where the platform fetches it: an http(s) URL (a template), at most"
        " 2,000 characters.",
        examples=["https://example.com/map.png", "{{invoice.url}}"],
    )
    caption: Localized | None = Field(
        default=None,
        description="Text shown with the media: at most 1,024 characters.",
        examples=["How to find us", {"pt-BR": "Como chegar", "en": "How to find us"}],
    )
    filename: str | None = Field(
        default=None,
        max_length=MAX_FILENAME,
        description="The file name a `document` is shown with (a template), at most 240"
        " characters.",
        examples=["invoice.pdf", "receipt-{{order.id}}.pdf"],
    )


class Location(WireModel):
    """A place on the map."""

    model_config = described(
        "A place on the map. A channel that cannot show locations sends its name, address"
        " and a map link as text.",
        {
            "latitude": -23.5614,
            "longitude": -46.6559,
            "name": "Clinic",
            "address": "Av. Paulista, 1000",
        },
        {"latitude": "{{place.lat}}", "longitude": "{{place.lng}}", "name": "{{place.name}}"},
        title="Location",
    )

    latitude: float | str = Field(
        description="Degrees, -90 to 90, or a template giving the number (`{{place.lat}}`);"
        " a rendered value that is not a latitude shows 0.",
        examples=[-23.5614, "{{place.lat}}"],
    )
    longitude: float | str = Field(
        description="Degrees, -180 to 180, or a template giving the number (`{{place.lng}}`);"
        " a rendered value that is not a longitude shows 0.",
        examples=[-46.6559, "{{place.lng}}"],
    )
    name: Localized | None = Field(
        default=None,
        description="The place's name (a template, or a map of languages).",
        examples=["Clinic", "{{place.name}}"],
    )
    address: Localized | None = Field(
        default=None,
        description="The place's address (a template, or a map of languages).",
        examples=["Av. Paulista, 1000 - São Paulo"],
    )

    @field_validator("latitude", "longitude")
    @classmethod
    def _in_range(cls, value: float | str, info: Any) -> float | str:
        if isinstance(value, str):
            if "{{" not in value:
                raise ValueError("a number, or a template such as '{{place.lat}}'")
            return value
        bound = 90 if info.field_name == "latitude" else 180
        if not -bound <= value <= bound:
            raise ValueError(f"must be between -{bound} and {bound}")
        return value


class ContentFields(WireModel):
    """What a message may carry beside its ``text`` (message, question, handoff, end)."""

    header: Localized | None = Field(
        default=None,
        description="A title above the text, with buttons or a list only: at most 60 characters.",
        examples=["Appointments", {"pt-BR": "Consultas", "en": "Appointments"}],
    )
    footer: Localized | None = Field(
        default=None,
        description="A line below the text, with buttons or a list only: at most 60 characters.",
        examples=["Reply STOP to leave"],
    )
    buttons: list[Button] | None = Field(
        default=None,
        max_length=100,
        description="1 to 3 reply buttons; a `choice` question takes its options from them."
        " One of buttons, list, media, location per message. More than 3 (up to 10) are"
        " shown as a list.",
        examples=[[{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]],
    )
    list_: ListSpec | None = Field(
        default=None,
        alias="list",
        description="Options behind a button, in sections (at most 10 rows); a `choice`"
        " question takes its options from its rows.",
        examples=[
            {
                "button": "See specialties",
                "sections": [{"rows": [{"id": "cardio", "title": "Cardiology"}]}],
            }
        ],
    )
    media: Media | None = Field(
        default=None,
        description="An image, video, audio, document or sticker, by link.",
        examples=[{"kind": "image", "url": "https://example.com/map.png", "caption": "Our map"}],
    )
    location: Location | None = Field(
        default=None,
        description="A place on the map, with its name and address.",
        examples=[{"latitude": -23.5614, "longitude": -46.6559, "name": "Clinic"}],
    )
    template: TemplateMessage | None = Field(
        default=None,
        description="A WhatsApp template Meta approved, sent instead when the contact last"
        " wrote more than 24 hours ago (outside the customer-service window); without one"
        " the node fails there with error kind `outside_window`. Inside the window the"
        " message is sent as usual, the template kept beside it for a channel Meta tells"
        " the window has closed.",
        examples=[
            {
                "name": "appointment_reminder",
                "language": "pt_BR",
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}]}
                ],
            }
        ],
    )

    def expressions(self) -> Iterator[tuple[str, str]]:
        """A list's ``rowsFrom.items`` is an expression, checked when the flow is
        published like a condition's (a typo must not fail the step that shows it)."""
        for s, section in enumerate(self.list_.sections if self.list_ is not None else ()):
            if section.rows_from is not None:
                yield f"list.sections[{s}].rowsFrom.items", section.rows_from.items

    def rich(self) -> bool:
        return any(
            part is not None for part in (self.buttons, self.list_, self.media, self.location)
        )


# ----------------------------------------------------------------------------- publish checks


def _text_variants(value: Localized | None) -> Iterator[tuple[str, str]]:
    """``(path suffix, text)`` for a text or each language of a localized one."""
    if value is None:
        return
    if isinstance(value, str):
        yield "", value
    else:
        for tag, text in value.items():
            yield f".{tag}", text


def _too_long(path: str, value: Localized | None, limit: int, what: str) -> Iterator[Problem_]:
    """A literal text past its limit is the author's to fix; a templated one is only
    known when rendered (and then truncated)."""
    for suffix, text in _text_variants(value):
        if "{{" not in text and len(text) > limit:
            yield path + suffix, f"at most {limit} characters for {what}; this one has {len(text)}"


Problem_ = tuple[str, str]


def content_problems(node: ContentFields, text: Localized | None) -> Iterator[Problem_]:
    """``(path relative to the node, message)`` for every WhatsApp limit the node's
    literal content breaks, and for parts that cannot go together."""
    parts = [
        name
        for name, part in (
            ("buttons", node.buttons),
            ("list", node.list_),
            ("media", node.media),
            ("location", node.location),
        )
        if part is not None
    ]
    if len(parts) > 1:
        yield parts[1], f"a message carries one of buttons, list, media, location (also {parts[0]})"
    yield from _too_long("text", text, MAX_BODY, "a message")
    if node.buttons is not None:
        if not node.buttons:
            yield "buttons", "at least 1 button"
        if len(node.buttons) > MAX_BUTTONS:
            yield f"buttons[{MAX_BUTTONS}]", f"at most {MAX_BUTTONS} buttons"
        seen: set[str] = set()
        for i, button in enumerate(node.buttons):
            if "{{" not in button.id and len(button.id) > MAX_BUTTON_ID:
                yield f"buttons[{i}].id", f"at most {MAX_BUTTON_ID} characters"
            if button.id in seen:
                yield f"buttons[{i}].id", f"button id '{button.id}' is used twice"
            seen.add(button.id)
            yield from _too_long(f"buttons[{i}].title", button.title, MAX_BUTTON_TITLE, "a button")
    if node.list_ is not None:
        yield from _list_problems(node.list_)
    if node.media is not None:
        yield from _too_long("media.caption", node.media.caption, MAX_CAPTION, "a caption")
        url = node.media.url
        if "{{" not in url and not url.startswith(("https://", "http://")):
            yield "media.url", "an http(s) URL"
    for name, value in (("header", node.header), ("footer", node.footer)):
        if value is not None and node.buttons is None and node.list_ is None:
            yield name, f"a {name} goes with buttons or a list"
        yield from _too_long(name, value, MAX_HEADER, f"a {name}")
    if (node.buttons is not None or node.list_ is not None) and text is None:
        yield "text", "missing: buttons and lists need a text"
    if node.template is not None:
        for rel, message in template_problems(node.template):
            yield f"template.{rel}", message
        if text is None and not node.rich():
            yield (
                "template",
                (
                    "a template is what is sent outside the 24-hour window; inside it the"
                    " node needs a text, media or a location to say"
                ),
            )


def _list_problems(spec: ListSpec) -> Iterator[Problem_]:
    yield from _too_long("list.button", spec.button, MAX_LIST_BUTTON, "a list's button")
    if len(spec.sections) > MAX_SECTIONS:
        yield f"list.sections[{MAX_SECTIONS}]", f"at most {MAX_SECTIONS} sections"
    rows = 0
    seen: set[str] = set()
    for s, section in enumerate(spec.sections):
        where = f"list.sections[{s}]"
        yield from _too_long(f"{where}.title", section.title, MAX_SECTION_TITLE, "a section title")
        if section.rows and section.rows_from is not None:
            yield f"{where}.rowsFrom", "a section has rows or rowsFrom, not both"
        if not section.rows and section.rows_from is None:
            yield f"{where}.rows", "missing: a section needs rows or rowsFrom"
        if len(spec.sections) > 1 and section.title is None:
            yield f"{where}.title", "missing: a list of several sections titles each"
        for r, row in enumerate(section.rows):
            rows += 1
            if rows == MAX_ROWS + 1:
                yield f"{where}.rows[{r}]", f"at most {MAX_ROWS} rows in all"
            if "{{" not in row.id and len(row.id) > MAX_ROW_ID:
                yield f"{where}.rows[{r}].id", f"at most {MAX_ROW_ID} characters"
            if row.id in seen:
                yield f"{where}.rows[{r}].id", f"row id '{row.id}' is used twice"
            seen.add(row.id)
            yield from _too_long(f"{where}.rows[{r}].title", row.title, MAX_ROW_TITLE, "a row")
            yield from _too_long(
                f"{where}.rows[{r}].description",
                row.description,
                MAX_ROW_DESCRIPTION,
                "a row's description",
            )


def localized_texts(node: ContentFields, text: Localized | None) -> Iterator[tuple[str, Localized]]:
    """``(path, text)`` for every text the node shows, for language and template checks."""
    if text is not None:
        yield "text", text
    for name, value in (("header", node.header), ("footer", node.footer)):
        if value is not None:
            yield name, value
    for i, button in enumerate(node.buttons or ()):
        yield f"buttons[{i}].title", button.title
    if node.list_ is not None:
        yield "list.button", node.list_.button
        for s, section in enumerate(node.list_.sections):
            where = f"list.sections[{s}]"
            if section.title is not None:
                yield f"{where}.title", section.title
            for r, row in enumerate(section.rows):
                yield f"{where}.rows[{r}].title", row.title
                if row.description is not None:
                    yield f"{where}.rows[{r}].description", row.description
            if section.rows_from is not None:
                yield f"{where}.rowsFrom.title", section.rows_from.title
                if section.rows_from.description is not None:
                    yield f"{where}.rowsFrom.description", section.rows_from.description
    if node.media is not None and node.media.caption is not None:
        yield "media.caption", node.media.caption
    if node.location is not None:
        for name, value in (("name", node.location.name), ("address", node.location.address)):
            if value is not None:
                yield f"location.{name}", value


def plain_templates(node: ContentFields) -> Iterator[tuple[str, str]]:
    """``(path, template)`` for every id and URL the node renders, and every string of
    its WhatsApp ``template`` (texts are in :func:`localized_texts`)."""
    for i, button in enumerate(node.buttons or ()):
        yield f"buttons[{i}].id", button.id
    if node.list_ is not None:
        for s, section in enumerate(node.list_.sections):
            for r, row in enumerate(section.rows):
                yield f"list.sections[{s}].rows[{r}].id", row.id
            if section.rows_from is not None:
                yield f"list.sections[{s}].rowsFrom.id", section.rows_from.id
    if node.media is not None:
        yield "media.url", node.media.url
        if node.media.filename is not None:
            yield "media.filename", node.media.filename
    if node.location is not None:
        for name, coordinate in (
            ("latitude", node.location.latitude),
            ("longitude", node.location.longitude),
        ):
            if isinstance(coordinate, str):
                yield f"location.{name}", coordinate
    if node.template is not None:
        for rel, template in template_strings(node.template):
            yield f"template.{rel}", template


# ----------------------------------------------------------------------------- languages


def contact_language(variables: Mapping[str, Any], default: str | None) -> str | None:
    """The contact's language (``contact.language``, kept by trilha from the start
    request, the contact's messages or a ``set`` node), else the flow's default."""
    contact = variables.get("contact")
    language = contact.get("language") if isinstance(contact, Mapping) else None
    return language if isinstance(language, str) and language else default


def spoken(text: Localized, variables: Mapping[str, Any], default: str | None) -> str:
    """``text`` in the contact's language (a flow setting such as the timeout message)."""
    return choose_language(text, contact_language(variables, default), default)


def choose_language(text: Localized, language: str | None, default: str | None) -> str:
    """The text in the contact's ``language``: the exact tag, else one of the same
    language (``pt`` for ``pt-BR`` and back), else the flow's ``default``, else the
    first one written."""
    if isinstance(text, str):
        return text
    for wanted in (language, default):
        if not wanted:
            continue
        found = _match_tag(text, wanted)
        if found is not None:
            return found
    return next(iter(text.values()))


def _match_tag(texts: Mapping[str, str], wanted: str) -> str | None:
    lowered = {tag.lower(): value for tag, value in texts.items()}
    exact = lowered.get(wanted.lower())
    if exact is not None:
        return exact
    primary = wanted.split("-", 1)[0].lower()
    for tag, value in lowered.items():
        if tag.split("-", 1)[0] == primary:
            return value
    return None


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class Said:
    """A message ready for the outbox: its plain text, its structured content (``None``
    for a plain text) and what rendering and degradation had to change."""

    text: str
    content: dict[str, Any] | None = None
    #: limits a rendered value broke (truncated): WARN lines of the trail
    truncated: tuple[str, ...] = ()
    #: what the channel could not show and how it was shown instead
    degraded: tuple[str, ...] = ()


#: fills one template: ``(template, extra variables) -> text``; the processor binds the
#: execution's variables and the step's budget, so this module stays free of both
Fill = Callable[[str, Mapping[str, Any] | None], str]
#: evaluates a ``rowsFrom.items`` expression against the variables
Evaluate = Callable[[str], Any]


@dataclass(slots=True)
class _Renderer:
    fill: Fill
    evaluate: Evaluate
    language: str | None
    default: str | None
    truncated: list[str] = field(default_factory=list)

    def text(
        self,
        value: Localized,
        limit: int,
        where: str,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        rendered = self.fill(choose_language(value, self.language, self.default), extra)
        return self.cut(rendered, limit, where)

    def cut(self, text: str, limit: int, where: str) -> str:
        if len(text) <= limit:
            return text
        self.truncated.append(
            f"{where} rendered {len(text)} characters; cut to {limit} (WhatsApp's limit)"
        )
        return text[: limit - 1] + ELLIPSIS

    def label(
        self,
        value: Localized,
        limit: int,
        where: str,
        fallback: str,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A title WhatsApp refuses when empty (a button's, a row's, a list's button):
        one that renders blank (a missing variable) shows ``fallback`` instead."""
        text = self.text(value, limit, where, extra)
        if text.strip():
            return text
        self.truncated.append(f"{where} rendered empty; {fallback[:40]!r} shown instead")
        return self.cut(fallback, limit, where)

    def option_id(
        self,
        template: str,
        number: int,
        seen: set[str],
        limit: int,
        where: str,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """An option's id, never empty nor used twice in the message (WhatsApp refuses
        both, and a reply's id must find one option): the option's number stands in
        for an empty one, a ``#number`` suffix tells a repeated one apart."""
        shown = self.cut(self.fill(template, extra), limit, f"{where}.id")
        if not shown.strip():
            self.truncated.append(f"{where}.id rendered empty; '{number}' used instead")
            shown = str(number)
        base, n = shown, number
        while shown in seen:  # ends: each turn tries a new suffix, seen is finite
            suffix = f"#{n}"
            shown = base[: limit - len(suffix)] + suffix
            n += 1
        if shown != base:
            self.truncated.append(f"{where}.id rendered {base[:40]!r}, used twice; {shown!r}")
        seen.add(shown)
        return shown


def render_content(
    text: Localized | None,
    node: ContentFields,
    *,
    fill: Fill,
    evaluate: Evaluate,
    language: str | None,
    default_language: str | None,
) -> Said:
    """Render a node's text and content for the contact's ``language``.

    Whatever the templates give, the content stays within WhatsApp's limits: long
    values are cut with an ellipsis, blank titles and ids are replaced, a list left
    without rows (its variable missing or empty) is sent as its text; each change is a
    note in :attr:`Said.truncated`. More than 3 buttons are kept (up to 10) for
    :func:`degrade` to show as a list."""
    r = _Renderer(fill, evaluate, language, default_language)
    body = r.text(text, MAX_BODY, "text") if text is not None else ""
    if not node.rich():
        return Said(body, None, tuple(r.truncated))
    content: dict[str, Any] = {"type": "text", "text": body}
    if node.buttons is not None or node.list_ is not None:
        for name, value in (("header", node.header), ("footer", node.footer)):
            shown = r.text(value, MAX_HEADER, name) if value is not None else ""
            if shown.strip():
                content[name] = shown
    if node.buttons:
        content["type"] = "buttons"
        content["buttons"] = _render_buttons(node.buttons, r)
    elif node.list_ is not None:
        spec = _render_list(node.list_, r)
        if spec["sections"]:
            content["type"] = "list"
            content["list"] = spec
        else:
            r.truncated.append("list has no rows to show (its items are missing or empty)")
            content = {"type": "text", "text": body}
    elif node.media is not None:
        content["type"] = "media"
        content["media"] = _render_media(node.media, r)
    elif node.location is not None:
        content["type"] = "location"
        content["location"] = _render_location(node.location, r)
    if content["type"] in ("buttons", "list") and not body.strip():
        r.truncated.append(f"text rendered empty; {ELLIPSIS!r} sent (WhatsApp needs a text)")
        content["text"] = ELLIPSIS
    if content["type"] == "text":
        return Said(content["text"], None, tuple(r.truncated))
    return Said(_plain_within(content, r.truncated), content, tuple(r.truncated))


def _render_buttons(buttons: Sequence[Button], r: _Renderer) -> list[dict[str, Any]]:
    if len(buttons) > MAX_ROWS:
        r.truncated.append(
            f"{len(buttons)} buttons; the first {MAX_ROWS} are shown (WhatsApp's limit)"
        )
    seen: set[str] = set()
    shown = []
    for i, button in enumerate(buttons[:MAX_ROWS]):
        where = f"buttons[{i}]"
        option = r.option_id(button.id, i + 1, seen, MAX_BUTTON_ID, where)
        title = r.label(button.title, MAX_BUTTON_TITLE, f"{where}.title", option)
        shown.append({"id": option, "title": title})
    return shown


def _render_list(spec: ListSpec, r: _Renderer) -> dict[str, Any]:
    sections: list[dict[str, Any]] = []
    total = 0
    dropped = 0
    seen: set[str] = set()
    for s, section in enumerate(spec.sections[:MAX_SECTIONS]):
        where = f"list.sections[{s}]"
        rows: list[dict[str, Any]] = []
        for row_id, title, description, row_where, extra in _section_rows(section, where, r):
            if total >= MAX_ROWS:
                dropped += 1
                continue
            total += 1
            option = r.option_id(row_id, total, seen, MAX_ROW_ID, row_where, extra)
            shown = {
                "id": option,
                "title": r.label(title, MAX_ROW_TITLE, f"{row_where}.title", option, extra),
            }
            if description is not None:
                text = r.text(description, MAX_ROW_DESCRIPTION, f"{row_where}.description", extra)
                if text.strip():
                    shown["description"] = text
            rows.append(shown)
        if not rows:
            continue  # an empty section (a service returned no item) is not shown
        out: dict[str, Any] = {"rows": rows}
        if section.title is not None:
            title = r.text(section.title, MAX_SECTION_TITLE, f"{where}.title")
            if title.strip():
                out["title"] = title
        sections.append(out)
    if len(sections) > 1:
        for s, out in enumerate(sections):
            if "title" not in out:  # WhatsApp wants every section titled when there are several
                r.truncated.append(f"list's section {s + 1} has no title; {ELLIPSIS!r} shown")
                out["title"] = ELLIPSIS
    if dropped:
        r.truncated.append(
            f"list has {total + dropped} rows; the first {MAX_ROWS} are shown (WhatsApp's limit)"
        )
    label = _options_label(r.language or r.default)
    return {
        "button": r.label(spec.button, MAX_LIST_BUTTON, "list.button", label),
        "sections": sections,
    }


def _section_rows(
    section: Section, where: str, r: _Renderer
) -> Iterator[tuple[str, Localized, Localized | None, str, Mapping[str, Any] | None]]:
    for i, row in enumerate(section.rows):
        yield row.id, row.title, row.description, f"{where}.rows[{i}]", None
    spec = section.rows_from
    if spec is None:
        return
    items = r.evaluate(spec.items)
    if not isinstance(items, list | tuple):
        return  # a missing or non-list variable: no rows (the section is left out)
    last = len(items) - 1
    for i, item in enumerate(items):  # the caller renders the first 10 and counts the rest
        extra = {"this": item, "@index": i, "@number": i + 1, "@first": i == 0, "@last": i == last}
        yield spec.id, spec.title, spec.description, f"{where}.rowsFrom[{i}]", extra


def _render_media(media: Media, r: _Renderer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": media.kind,
        "url": r.cut(r.fill(media.url, None), MAX_URL, "media.url"),
    }
    if media.caption is not None:
        caption = r.text(media.caption, MAX_CAPTION, "media.caption")
        if caption:
            out["caption"] = caption
    if media.filename is not None:
        out["filename"] = r.cut(r.fill(media.filename, None), MAX_FILENAME, "media.filename")
    return out


def _render_location(location: Location, r: _Renderer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "latitude": _coordinate(location.latitude, 90, "latitude", r),
        "longitude": _coordinate(location.longitude, 180, "longitude", r),
    }
    for name, value in (("name", location.name), ("address", location.address)):
        if value is not None:
            text = r.text(value, 1_000, f"location.{name}")
            if text:
                out[name] = text
    return out


def _coordinate(value: float | str, bound: int, what: str, r: _Renderer) -> float:
    if not isinstance(value, str):
        return float(value)
    text = r.fill(value, None).strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not -bound <= number <= bound:  # also NaN
        r.truncated.append(f"location.{what} rendered {text[:40]!r}, not a {what}: 0 shown")
        return 0.0
    return number


# ----------------------------------------------------------------------------- plain text


def _numbered(options: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for n, option in enumerate(options, 1):
        description = option.get("description")
        suffix = f" — {description}" if description else ""
        lines.append(f"{n}. {option['title']}{suffix}")
    return "\n".join(lines)


def map_link(latitude: float, longitude: float) -> str:
    """A link any phone opens in its maps app (Google Maps' documented search URL)."""
    return f"https://www.google.com/maps/search/?api=1&query={latitude:.6f}%2C{longitude:.6f}"


def plain(content: Mapping[str, Any]) -> str:
    """The content as text only: what a channel that shows nothing else prints, and the
    ``text`` every message keeps. Options are numbered, so a reply by number matches."""
    kind = content.get("type", "text")
    body = str(content.get("text", ""))
    parts = [str(content["header"])] if content.get("header") else []
    if body:
        parts.append(body)
    if kind in ("buttons", "list"):
        parts.append(_numbered(options_of(content)))
    elif kind == "media":
        media = content["media"]
        parts.extend(p for p in (media.get("caption"), media["url"]) if p)
    elif kind == "location":
        place = content["location"]
        parts.extend(p for p in (place.get("name"), place.get("address")) if p)
        parts.append(map_link(place["latitude"], place["longitude"]))
    if content.get("footer"):
        parts.append(str(content["footer"]))
    return "\n\n".join(parts) if kind in ("buttons", "list") else "\n".join(parts)


def options_of(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The options a rendered message offers, in the order they are numbered: its
    buttons, or its list's rows section after section."""
    if content.get("type") == "buttons":
        return [dict(b) for b in content.get("buttons", ())]
    if content.get("type") == "list":
        return [dict(row) for s in content["list"]["sections"] for row in s["rows"]]
    return [dict(o) for o in content.get("options", ())]  # numbered text kept them


# ----------------------------------------------------------------------------- degradation


def _options_label(language: str | None) -> str:
    """The button opening a list trilha made (of buttons; of rows whose button
    rendered blank), in the contact's language."""
    return _OPTIONS_LABEL.get((language or "en").split("-", 1)[0].lower(), "Options")


def _plain_within(content: Mapping[str, Any], notes: list[str]) -> str:
    """:func:`plain` within WhatsApp's 4,096 characters for a text: the body gives way,
    since the options, the link or the place are what the contact acts on."""
    text = plain(content)
    excess = len(text) - MAX_BODY
    if excess <= 0:
        return text
    body = str(content.get("text", ""))
    if len(body) > excess:
        text = plain({**content, "text": body[: len(body) - excess - 1] + ELLIPSIS})
    else:
        text = text[: MAX_BODY - 1] + ELLIPSIS
    notes.append(
        f"the message as text has {MAX_BODY + excess} characters; its text was cut to fit"
        f" {MAX_BODY} (WhatsApp's limit)"
    )
    return text


def degrade(said: Said, renders: frozenset[str], language: str | None = None) -> Said:
    """``said`` as a channel that renders ``renders`` can show it, the same way every
    time: buttons it cannot show (or more than 3) become a list, a list becomes
    numbered text, media becomes its caption and URL, a location its name, address and
    a map link."""
    content = said.content
    if content is None:
        return said
    kind = content["type"]
    notes: list[str] = []
    if kind == "buttons" and ("buttons" not in renders or len(content["buttons"]) > MAX_BUTTONS):
        why = (
            "the channel cannot show buttons"
            if "buttons" not in renders
            else f"more than {MAX_BUTTONS} buttons"
        )
        fits = all(len(b["id"]) <= MAX_ROW_ID for b in content["buttons"])
        if "list" in renders and fits:
            rows = [{"id": b["id"], "title": b["title"]} for b in content["buttons"]]
            content = {k: v for k, v in content.items() if k != "buttons"} | {
                "type": "list",
                "list": {"button": _options_label(language), "sections": [{"rows": rows}]},
            }
            notes.append(f"buttons shown as a list ({why})")
            kind = "list"
        else:
            if "list" in renders:
                why += f", and an id is longer than a list row's {MAX_ROW_ID} characters"
            notes.append(f"buttons shown as numbered options ({why})")
            return _as_text(said, content, notes)
    if kind == "list" and "list" not in renders:
        notes.append("list shown as numbered options (the channel cannot show lists)")
        return _as_text(said, content, notes)
    if kind == "media" and "media" not in renders:
        notes.append("media shown as its caption and link (the channel cannot show media)")
        return _as_text(said, content, notes)
    if kind == "location" and "location" not in renders:
        notes.append("location shown as its name, address and a map link")
        return _as_text(said, content, notes)
    if not notes:
        return said
    # a list of buttons reads as the buttons did: rendering noted any cut already
    return Said(_plain_within(content, []), content, said.truncated, tuple(notes))


def _as_text(said: Said, content: Mapping[str, Any], notes: list[str]) -> Said:
    """The message as plain text; its ``content`` says so (``type: text``) and keeps the
    options it numbered, so a reply by number still finds them."""
    truncated = list(said.truncated)
    text = _plain_within(content, truncated)
    shown: dict[str, Any] = {"type": "text", "text": text}
    options = options_of(content)
    if options:
        shown["options"] = [{"id": o["id"], "title": o["title"]} for o in options]
    return Said(text, shown, tuple(truncated), tuple(notes))
