"""Help for flow authors, kept on the models it describes.

Editors show a JSON Schema's ``description`` on hover and offer its ``examples`` as
completions, so every model a flow is made of says what it is for in words an author
reads, next to its fields' own ``Field(description=..., examples=[...])``. Keeping the
text on the model (not in a side table) means a field cannot be added or renamed
without its help moving with it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

__all__ = ["described"]


def described(description: str, *examples: Any, title: str | None = None) -> ConfigDict:
    """A model's ``model_config`` giving its schema ``description`` and ``examples``
    (each a complete, valid object), and a ``title`` when set.

    Pydantic merges a class's ``model_config`` over its bases', so only the schema
    help changes; the help replaces the class docstring, which is written for
    developers. A subclass that sets no help of its own inherits this one: each model
    in the flow schema sets its own."""
    extra: dict[str, Any] = {"description": description, "examples": list(examples)}
    if title is not None:
        extra = {"title": title, **extra}
    return ConfigDict(json_schema_extra=extra)
