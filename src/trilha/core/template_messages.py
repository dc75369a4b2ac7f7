"""WhatsApp message templates: what a node sends when the contact has not written for
24 hours. Pure: no I/O.

WhatsApp lets a business answer freely only within 24 hours of the contact's last
message (the customer-service window); after that, only a template Meta approved
beforehand may start the conversation again, filled in with parameters. A node names
such a template in its ``template`` property, in the shape Meta's Cloud API documents
for sending one (``components`` of type ``header``, ``body`` and ``button``, each with
``parameters``; the keys inside are Meta's, snake_case), so an author can copy it from
Meta's documentation. Every string inside is a ``{{ }}`` template, rendered like the
node's text and counted against the same budget.

Publishing checks what Meta would refuse and can be known before sending
(:func:`template_problems`): the name and the language code, the components' types,
which parameter types each takes and how many, literal values past Meta's limits. A
rendered value past a limit is cut with an ellipsis and noted, as the node's text is
(:func:`render_template_message`): a conversation does not stop because a service
returned a long name. The rendered form is Meta's ``template`` object as sent
(``language`` becomes ``{"code": ...}``), so a channel passes it on as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trilha.core.schema_help import described
from trilha.errors import ExpressionError

__all__ = [
    "TemplateComponent",
    "TemplateMessage",
    "TemplateParameter",
    "render_template_message",
    "template_problems",
    "template_strings",
]

#: Meta's template names: lowercase letters, digits and underscores, up to 512
MAX_NAME: Final = 512
NAME_PATTERN: Final = r"^[a-z0-9_]+$"
#: Meta's language and locale codes: ``en``, ``pt_BR``, ``es_AR``, ``fil``, ``zh_HK``
LANGUAGE_PATTERN: Final = r"^[a-z]{2,3}(?:_[A-Z]{2,3})?$"
#: named parameters (``{{first_name}}`` in the template Meta approved)
PARAMETER_NAME_PATTERN: Final = r"^[a-z0-9_]{1,100}$"
CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
#: a button's position among the template's buttons (Meta allows 10, indexes 0 to 9)
MAX_BUTTONS: Final = 10
MAX_COMPONENTS: Final = 2 + MAX_BUTTONS
#: a body's parameters: Meta documents no count; a bound all the same (DESIGN §9)
MAX_BODY_PARAMETERS: Final = 100
#: Meta's limits on a parameter's text, by where it goes
MAX_HEADER_TEXT: Final = 60
MAX_BODY_TEXT: Final = 1_024
#: a body's text when the body is the template's only component
MAX_BODY_ONLY_TEXT: Final = 32_768
MAX_PAYLOAD: Final = 256
MAX_COUPON_CODE: Final = 15
MAX_URL_SUFFIX: Final = 2_000
MAX_FALLBACK_VALUE: Final = 1_024
MAX_LINK: Final = 2_000
MAX_FILENAME: Final = 240
#: what a string may be before rendering (rendering may grow or shrink it)
MAX_RAW: Final = 4_096
#: ``amount_1000`` is Meta's int32 (the amount times 1,000)
MAX_AMOUNT: Final = 2**31 - 1
ELLIPSIS: Final = "…"

Raw = Annotated[str, Field(max_length=MAX_RAW)]
ParameterType = Literal[
    "text", "currency", "date_time", "image", "video", "document", "payload", "coupon_code"
]

_NAME_RE: Final = re.compile(NAME_PATTERN)
_LANGUAGE_RE: Final = re.compile(LANGUAGE_PATTERN)
_CURRENCY_RE: Final = re.compile(CURRENCY_PATTERN)

#: which parameter types each component takes (a button's by its ``sub_type``)
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "header": frozenset({"text", "currency", "date_time", "image", "video", "document"}),
    "body": frozenset({"text", "currency", "date_time"}),
    "quick_reply": frozenset({"payload"}),
    "url": frozenset({"text"}),
    "copy_code": frozenset({"coupon_code"}),
}


class _Meta(BaseModel):
    """Meta's own keys (snake_case, as its documentation writes them), unknown ones
    refused so a typo surfaces when the flow is published."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateCurrency(_Meta):
    """An amount of money, shown as ``fallback_value``."""

    model_config = described(
        "An amount of money for a `currency` parameter.",
        {"fallback_value": "R$ 150,00", "code": "BRL", "amount_1000": 150000},
        {"fallback_value": "{{price_text}}", "code": "BRL", "amount_1000": "{{ price * 1000 }}"},
        title="Template currency",
    )

    fallback_value: Raw = Field(
        min_length=1,
        description="The amount as the contact reads it, such as `R$ 150,00` (a template).",
        examples=["R$ 150,00", "{{price_text}}"],
    )
    code: Raw = Field(
        min_length=1,
        description="The ISO 4217 currency code, such as `BRL` (a template).",
        examples=["BRL", "USD"],
    )
    amount_1000: int | Raw = Field(
        description="The amount times 1,000 (150.00 is 150000): an integer, or a template"
        " giving one (`{{ price * 1000 }}`); a literal one from -2,147,483,647 to"
        " 2,147,483,647.",
        examples=[150000, "{{ price * 1000 }}"],
    )

    @field_validator("amount_1000")
    @classmethod
    def _amount(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            if "{{" not in value:
                raise ValueError("an integer, or a template such as '{{ price * 1000 }}'")
            return value
        if not -MAX_AMOUNT <= value <= MAX_AMOUNT:
            raise ValueError(f"must be between -{MAX_AMOUNT} and {MAX_AMOUNT}")
        return value


class TemplateDateTime(_Meta):
    """A date and time, shown as ``fallback_value`` (what the Cloud API sends)."""

    model_config = described(
        "A date and time for a `date_time` parameter, sent as the text the contact reads.",
        {"fallback_value": "12/03 às 14:30"},
        {"fallback_value": "{{ booking.when }}"},
        title="Template date and time",
    )

    fallback_value: Raw = Field(
        min_length=1,
        description="The date as the contact reads it, such as `12/03 às 14:30` (a template).",
        examples=["12/03 às 14:30", "{{ booking.when }}"],
    )


class TemplateMedia(_Meta):
    """A header's image, video or document, by link."""

    model_config = described(
        "A header's image, video or document, by link.",
        {"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf"},
        {"link": "{{photo_url}}"},
        title="Template media",
    )

    link: Raw = Field(
        min_length=1,
        description="An http(s) URL Meta fetches it from (a template).",
        examples=["https://example.com/invoice.pdf", "{{photo_url}}"],
    )
    filename: Raw | None = Field(
        default=None,
        description="A document's file name, as the contact sees it (a template).",
        examples=["invoice.pdf"],
    )


class TemplateParameter(_Meta):
    """One value the template Meta approved is filled with; ``type`` names the key that
    holds it (``{"type": "text", "text": "Ana"}``)."""

    model_config = described(
        "One value the approved template is filled with: `type` names the property that"
        " holds it, as in Meta's Cloud API.",
        {"type": "text", "text": "{{contact.name}}"},
        {"type": "text", "parameter_name": "first_name", "text": "Ana"},
        {"type": "payload", "payload": "confirm-{{booking.id}}"},
        title="Template parameter",
    )

    type: ParameterType = Field(
        description="`text`, `currency`, `date_time`, `image`, `video`, `document` (header"
        " and body), `payload` (a quick-reply button), `coupon_code` (a copy-code button).",
        examples=["text", "payload"],
    )
    parameter_name: str | None = Field(
        default=None,
        max_length=100,
        description="The variable's name, for a template approved with named parameters"
        " (`{{first_name}}`); all of a template's header and body parameters are named, or"
        " none.",
        examples=["first_name"],
    )
    text: Raw | None = Field(
        default=None,
        description="For `text`: at most 60 characters in a header, 1,024 in a body (32,768"
        " when the body is the only component); a `url` button's URL suffix.",
        examples=["{{contact.name}}", "Ana"],
    )
    currency: TemplateCurrency | None = Field(
        default=None,
        description="For `currency`: an amount of money.",
        examples=[{"fallback_value": "R$ 150,00", "code": "BRL", "amount_1000": 150000}],
    )
    date_time: TemplateDateTime | None = Field(
        default=None,
        description="For `date_time`: a date as the contact reads it.",
        examples=[{"fallback_value": "12/03 às 14:30"}],
    )
    image: TemplateMedia | None = Field(
        default=None,
        description="For `image`, by link.",
        examples=[{"link": "https://example.com/banner.png"}],
    )
    video: TemplateMedia | None = Field(
        default=None,
        description="For `video`, by link.",
        examples=[{"link": "https://example.com/welcome.mp4"}],
    )
    document: TemplateMedia | None = Field(
        default=None,
        description="For `document`, by link, with its `filename`.",
        examples=[{"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf"}],
    )
    payload: Raw | None = Field(
        default=None,
        description="For `payload`: what a press of the quick-reply button carries back (at"
        " most 256 characters).",
        examples=["confirm-{{booking.id}}"],
    )
    coupon_code: Raw | None = Field(
        default=None,
        description="For `coupon_code`: the code copied (at most 15 characters).",
        examples=["WELCOME10"],
    )


class TemplateComponent(_Meta):
    """A part of the template with values to fill in: its header, its body, or one of
    its buttons."""

    model_config = described(
        "A part of the approved template with values to fill in: its header, its body, or"
        " one of its buttons.",
        {"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "confirm"}],
        },
        title="Template component",
    )

    type: Literal["header", "body", "button"] = Field(
        description="`header`, `body` or `button` (one component per button with values).",
        examples=["body", "button"],
    )
    sub_type: Literal["quick_reply", "url", "copy_code"] | None = Field(
        default=None,
        description="A button's kind: `quick_reply` (a `payload`), `url` (a `text`: the URL's"
        " suffix) or `copy_code` (a `coupon_code`).",
        examples=["quick_reply", "url"],
    )
    index: int | None = Field(
        default=None,
        ge=0,
        le=MAX_BUTTONS - 1,
        description="A button's position among the template's buttons, 0 to 9.",
        examples=[0, 1],
    )
    parameters: list[TemplateParameter] = Field(
        default_factory=list,
        max_length=MAX_BODY_PARAMETERS,
        description="The values, in the order of the template's variables: at most 1 in a"
        " header or a button.",
        examples=[[{"type": "text", "text": "{{contact.name}}"}]],
    )


class TemplateMessage(_Meta):
    """A template Meta approved, with the values to fill it with."""

    model_config = described(
        "A WhatsApp template approved by Meta, with the values to fill it with, in the"
        " shape of Meta's Cloud API (its keys are snake_case, as Meta writes them).",
        {
            "name": "appointment_reminder",
            "language": "pt_BR",
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}]}
            ],
        },
        {"name": "welcome_back", "language": "en"},
        title="WhatsApp template",
    )

    name: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="The template's name as approved in WhatsApp Manager: lowercase letters,"
        " digits and underscores, at most 512 characters.",
        examples=["appointment_reminder"],
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    language: str = Field(
        min_length=2,
        max_length=15,
        description="The language and locale the template was approved in, as Meta writes"
        " it: `pt_BR`, `en`, `en_US`, `es_AR`.",
        examples=["pt_BR", "en"],
        json_schema_extra={"pattern": LANGUAGE_PATTERN},
    )
    components: list[TemplateComponent] = Field(
        default_factory=list,
        max_length=MAX_COMPONENTS,
        description="The values of the template's variables, in Meta's shape: a `header`, a"
        " `body` and `button`s, each with its `parameters`. Every string is a template,"
        " rendered like the node's text. Empty for a template without variables.",
        examples=[[{"type": "body", "parameters": [{"type": "text", "text": "{{contact.name}}"}]}]],
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"'{value[:40]}' is not a template name: lowercase letters, digits and"
                " underscores, such as 'appointment_reminder'"
            )
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not _LANGUAGE_RE.match(value):
            raise ValueError(
                f"'{value[:20]}' is not a language code as Meta writes them, such as 'pt_BR'"
                " or 'en'"
            )
        return value


# ----------------------------------------------------------------------------- publish checks

Problem_ = tuple[str, str]

#: (parameter key, the limit its rendered text has, what it is) by parameter type, for
#: the plain-string ones; ``text`` depends on the component
_STRING_LIMITS: Final[dict[str, tuple[int, str]]] = {
    "payload": (MAX_PAYLOAD, "a quick-reply button's payload"),
    "coupon_code": (MAX_COUPON_CODE, "a coupon code"),
}


def _text_limit(component: TemplateComponent, body_only: bool) -> tuple[int, str]:
    if component.type == "header":
        return MAX_HEADER_TEXT, "a header's parameter"
    if component.type == "button":
        return MAX_URL_SUFFIX, "a url button's suffix"
    if body_only:
        return MAX_BODY_ONLY_TEXT, "a body's parameter"
    return MAX_BODY_TEXT, "a body's parameter (with other components)"


def _literal_too_long(path: str, value: str | None, limit: int, what: str) -> Iterator[Problem_]:
    """A literal value past its limit is the author's to fix; a templated one is only
    known when rendered (and then cut)."""
    if value is not None and "{{" not in value and len(value) > limit:
        yield path, f"at most {limit} characters for {what}; this one has {len(value)}"


def _kind(component: TemplateComponent) -> str:
    """What decides the parameters a component takes: a button's ``sub_type``, else its
    type (``""`` for a button that names none: reported on its own)."""
    if component.type == "button":
        return component.sub_type or ""
    return component.type


def template_problems(template: TemplateMessage) -> Iterator[Problem_]:
    """``(path relative to the template, message)`` for what Meta would refuse that can
    be known before sending: components repeated or out of place, parameters of a type
    the component does not take, too many of them, literal values past Meta's limits."""
    seen: dict[str, int] = {}
    indexes: dict[int, int] = {}
    body_only = [c.type for c in template.components] == ["body"]
    named: list[tuple[str, bool]] = []
    buttons = 0
    for c, component in enumerate(template.components):
        where = f"components[{c}]"
        if component.type in ("header", "body"):
            if component.type in seen:
                yield (
                    where,
                    f"a second {component.type} (the first is components[{seen[component.type]}])",
                )
            seen.setdefault(component.type, c)
            for key in ("sub_type", "index"):
                if getattr(component, key) is not None:
                    yield f"{where}.{key}", f"only for a button, not a {component.type}"
            if not component.parameters:
                yield f"{where}.parameters", f"missing: a {component.type} is listed for its values"
        else:
            buttons += 1
            if buttons == MAX_BUTTONS + 1:
                yield where, f"at most {MAX_BUTTONS} buttons"
            if component.sub_type is None:
                yield f"{where}.sub_type", "missing: a button is quick_reply, url or copy_code"
            if component.index is None:
                yield f"{where}.index", "missing: the button's position, 0 to 9"
            elif component.index in indexes:
                yield (
                    f"{where}.index",
                    f"button {component.index} is filled twice (also components"
                    f"[{indexes[component.index]}])",
                )
            else:
                indexes[component.index] = c
            if len(component.parameters) != 1:
                yield f"{where}.parameters", "a button takes exactly 1 parameter"
        if component.type == "header" and len(component.parameters) > 1:
            yield f"{where}.parameters[1]", "a header takes at most 1 parameter"
        allowed = _ALLOWED.get(_kind(component), frozenset())
        for p, parameter in enumerate(component.parameters):
            at = f"{where}.parameters[{p}]"
            if allowed and parameter.type not in allowed:
                what = (
                    f"a {component.sub_type} button"
                    if component.type == "button"
                    else f"a {component.type}"
                )
                yield (
                    f"{at}.type",
                    f"'{parameter.type}' is not for {what} (it takes {', '.join(sorted(allowed))})",
                )
            yield from _parameter_problems(at, parameter, component, body_only)
            if component.type != "button":
                named.append((at, parameter.parameter_name is not None))
            elif parameter.parameter_name is not None:
                yield f"{at}.parameter_name", "only for a header's or a body's parameters"
    if named and any(n for _, n in named) and not all(n for _, n in named):
        first_unnamed = next(at for at, n in named if not n)
        yield (
            f"{first_unnamed}.parameter_name",
            "missing: the other parameters are named; a template's parameters are all named"
            " or none",
        )


def _parameter_problems(
    at: str, parameter: TemplateParameter, component: TemplateComponent, body_only: bool
) -> Iterator[Problem_]:
    kind = parameter.type
    value_keys = ("text", "currency", "date_time", "image", "video", "document", "payload")
    for key in (*value_keys, "coupon_code"):
        present = getattr(parameter, key) is not None
        if key == kind and not present:
            yield f"{at}.{key}", f"missing: a '{kind}' parameter holds its value in '{key}'"
        elif key != kind and present:
            yield f"{at}.{key}", f"not for a '{kind}' parameter (its value goes in '{kind}')"
    name = parameter.parameter_name
    if name is not None and not re.match(PARAMETER_NAME_PATTERN, name):
        yield (
            f"{at}.parameter_name",
            f"'{name[:40]}' is not a parameter name (lowercase letters, digits, '_')",
        )
    if kind == "text":
        limit, what = _text_limit(component, body_only)
        yield from _literal_too_long(f"{at}.text", parameter.text, limit, what)
    elif kind in _STRING_LIMITS:
        limit, what = _STRING_LIMITS[kind]
        yield from _literal_too_long(f"{at}.{kind}", getattr(parameter, kind), limit, what)
    elif kind == "currency" and parameter.currency is not None:
        money = parameter.currency
        if "{{" not in money.code and not _CURRENCY_RE.match(money.code):
            yield (
                f"{at}.currency.code",
                f"'{money.code[:20]}' is not an ISO 4217 code such as 'BRL'",
            )
        yield from _literal_too_long(
            f"{at}.currency.fallback_value", money.fallback_value, MAX_FALLBACK_VALUE, "a value"
        )
    elif kind == "date_time" and parameter.date_time is not None:
        yield from _literal_too_long(
            f"{at}.date_time.fallback_value",
            parameter.date_time.fallback_value,
            MAX_FALLBACK_VALUE,
            "a value",
        )
    elif kind in ("image", "video", "document"):
        media: TemplateMedia | None = getattr(parameter, kind)
        if media is not None:
            if "{{" not in media.link and not media.link.startswith(("https://", "http://")):
                yield f"{at}.{kind}.link", "an http(s) URL"
            yield from _literal_too_long(f"{at}.{kind}.link", media.link, MAX_LINK, "a link")
            if media.filename is not None and kind != "document":
                yield f"{at}.{kind}.filename", "only for a document"
            yield from _literal_too_long(
                f"{at}.{kind}.filename", media.filename, MAX_FILENAME, "a file name"
            )


def template_strings(template: TemplateMessage) -> Iterator[tuple[str, str]]:
    """``(path relative to the template, string)`` for every string rendered as a
    template, so publishing lints them as it does the node's text."""
    for c, component in enumerate(template.components):
        for p, parameter in enumerate(component.parameters):
            at = f"components[{c}].parameters[{p}]"
            for key in ("text", "payload", "coupon_code"):
                value = getattr(parameter, key)
                if value is not None:
                    yield f"{at}.{key}", value
            if parameter.currency is not None:
                yield f"{at}.currency.fallback_value", parameter.currency.fallback_value
                yield f"{at}.currency.code", parameter.currency.code
                if isinstance(parameter.currency.amount_1000, str):
                    yield f"{at}.currency.amount_1000", parameter.currency.amount_1000
            if parameter.date_time is not None:
                yield f"{at}.date_time.fallback_value", parameter.date_time.fallback_value
            for kind in ("image", "video", "document"):
                media: TemplateMedia | None = getattr(parameter, kind)
                if media is not None:
                    yield f"{at}.{kind}.link", media.link
                    if media.filename is not None:
                        yield f"{at}.{kind}.filename", media.filename


# ----------------------------------------------------------------------------- rendering

#: fills one template string: the processor binds the variables and the step's budget
Fill = Callable[[str], str]


class _Filler:
    def __init__(self, fill: Fill, notes: list[str]) -> None:
        self.fill = fill
        self.notes = notes

    def text(self, value: str, limit: int, where: str, *, blank_ok: bool = False) -> str:
        """A rendered value within ``limit``; one that renders blank shows an ellipsis
        (Meta refuses an empty parameter) unless ``blank_ok``."""
        shown = self.fill(value)
        if not shown.strip() and not blank_ok:
            self.notes.append(f"template.{where} rendered empty; {ELLIPSIS!r} sent")
            return ELLIPSIS
        if len(shown) <= limit:
            return shown
        self.notes.append(
            f"template.{where} rendered {len(shown)} characters; cut to {limit} (WhatsApp's limit)"
        )
        return shown[: limit - 1] + ELLIPSIS


def render_template_message(
    template: TemplateMessage, fill: Fill, notes: list[str]
) -> dict[str, Any]:
    """Meta's ``template`` object for ``template`` filled in: each string rendered by
    ``fill``, values past Meta's limits cut (each cut a note in ``notes``). An
    ``amount_1000`` that does not render as an integer raises
    :class:`~trilha.errors.ExpressionError`: a wrong amount of money is not sent."""
    r = _Filler(fill, notes)
    body_only = [c.type for c in template.components] == ["body"]
    components: list[dict[str, Any]] = []
    for c, component in enumerate(template.components):
        out: dict[str, Any] = {"type": component.type}
        if component.sub_type is not None:
            out["sub_type"] = component.sub_type
        if component.index is not None:
            out["index"] = component.index
        out["parameters"] = [
            _render_parameter(
                f"components[{c}].parameters[{p}]", parameter, component, body_only, r
            )
            for p, parameter in enumerate(component.parameters)
        ]
        components.append(out)
    rendered: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        rendered["components"] = components
    return rendered


def _render_parameter(
    at: str,
    parameter: TemplateParameter,
    component: TemplateComponent,
    body_only: bool,
    r: _Filler,
) -> dict[str, Any]:
    kind = parameter.type
    out: dict[str, Any] = {"type": kind}
    if parameter.parameter_name is not None:
        out["parameter_name"] = parameter.parameter_name
    if kind == "text" and parameter.text is not None:
        limit, _ = _text_limit(component, body_only)
        out["text"] = r.text(parameter.text, limit, f"{at}.text")
    elif kind in _STRING_LIMITS:
        limit, _ = _STRING_LIMITS[kind]
        out[kind] = r.text(str(getattr(parameter, kind) or ""), limit, f"{at}.{kind}")
    elif kind == "currency" and parameter.currency is not None:
        money = parameter.currency
        out["currency"] = {
            "fallback_value": r.text(
                money.fallback_value, MAX_FALLBACK_VALUE, f"{at}.currency.fallback_value"
            ),
            "code": r.text(money.code, 3, f"{at}.currency.code").strip().upper(),
            "amount_1000": _amount(money.amount_1000, r, f"{at}.currency.amount_1000"),
        }
    elif kind == "date_time" and parameter.date_time is not None:
        out["date_time"] = {
            "fallback_value": r.text(
                parameter.date_time.fallback_value,
                MAX_FALLBACK_VALUE,
                f"{at}.date_time.fallback_value",
            )
        }
    elif kind in ("image", "video", "document"):
        media: TemplateMedia | None = getattr(parameter, kind)
        if media is not None:
            shown: dict[str, Any] = {"link": r.text(media.link, MAX_LINK, f"{at}.{kind}.link")}
            if media.filename is not None:
                shown["filename"] = r.text(media.filename, MAX_FILENAME, f"{at}.{kind}.filename")
            out[kind] = shown
    return out


def _amount(value: int | str, r: _Filler, where: str) -> int:
    if isinstance(value, int):
        return value
    text = r.fill(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number != number or not number.is_integer() or abs(number) > MAX_AMOUNT:  # NaN too
        raise ExpressionError(
            f"template.{where} rendered {text[:40]!r}, not an integer amount (times 1,000)"
            f" up to {MAX_AMOUNT}"
        )
    return int(number)
