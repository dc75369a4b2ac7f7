"""The base of every wire model: camelCase JSON, snake_case Python.

The platform that calls trilha lives in a TypeScript world, so everything on
the wire is camelCase; keeping the conversion in one base class means no model
can drift from it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused (typos surface early)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
