"""Loading processors from the ``trilha.processors`` entry-point group.

The built-in node types are registered the same way a third party's are (in
trilha's own ``pyproject.toml``), so there is one path, and a plugin can add a
node type by installing a package.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from trilha.core.flow import NodeBase, NodeTypes
from trilha.errors import ConfigError
from trilha.processors.base import Processor

GROUP = "trilha.processors"


class Processors:
    """Processor instances by node type, and the node models they bring."""

    def __init__(self, processors: dict[str, Processor]) -> None:
        self._by_type = processors
        self.node_types = NodeTypes({t: p.node_model for t, p in processors.items()})

    @classmethod
    def from_entry_points(cls, extra: dict[str, Processor] | None = None) -> Processors:
        found: dict[str, Processor] = {}
        for ep in entry_points(group=GROUP):
            try:
                factory: Any = ep.load()
                processor: Processor = factory()
            except Exception as exc:  # a broken plugin must say which one it is
                raise ConfigError(
                    f"processor entry point {ep.name!r} ({ep.value}) failed: {exc}"
                ) from exc
            model = getattr(processor, "node_model", None)
            if not (isinstance(model, type) and issubclass(model, NodeBase)):
                raise ConfigError(f"processor {ep.name!r} has no node_model deriving from NodeBase")
            found[ep.name] = processor
        found.update(extra or {})
        return cls(found)

    def get(self, node_type: str) -> Processor | None:
        return self._by_type.get(node_type)

    def wrapped(self, wrap: Callable[[Processor], Processor]) -> Processors:
        """The same node types, each processor behind ``wrap`` (fault injection)."""
        return Processors({t: wrap(p) for t, p in self._by_type.items()})

    async def aclose(self) -> None:
        for processor in self._by_type.values():
            close = getattr(processor, "aclose", None)
            if close is not None:
                await close()
