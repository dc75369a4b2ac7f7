"""What the engine's mixins (recovery, a person's hold, reminders and expiry) take from
the engine they are mixed into, declared once.

The engine is split by concern into mixins so each file owns one part of a turn;
they call back into the engine's step loop and its bookkeeping, which this base
declares so each mixin is type-checked against the same interface.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any

from trilha.config import Config
from trilha.core.execution import Execution
from trilha.core.flow import Flow, NodeBase
from trilha.core.states import ExecutionStatus
from trilha.engine.clock import Clock
from trilha.engine.turn import _Turn
from trilha.observability.metrics import Metrics
from trilha.processors.base import End
from trilha.store.base import Store


class EngineParts(ABC):
    """The engine as its mixins see it."""

    store: Store
    config: Config
    clock: Clock
    rng: random.Random
    worker_id: str
    metrics: Metrics | None
    _flows: dict[tuple[str, int], Flow]

    @abstractmethod
    async def flow(self, flow_id: str, version: int | None = None) -> Flow: ...

    @abstractmethod
    async def _run_nodes(self, ex: Execution, flow: Flow, turn: _Turn) -> None: ...

    @abstractmethod
    def _move(
        self, turn: _Turn, target: ExecutionStatus, reason: str, actor: str = "engine"
    ) -> None: ...

    @abstractmethod
    def _end(self, turn: _Turn, end: End, message: str | None) -> None: ...

    @abstractmethod
    def _log(
        self,
        turn: _Turn,
        level: str,
        message: str,
        node: NodeBase | None,
        context: dict[str, Any] | None = None,
    ) -> None: ...

    @abstractmethod
    async def _commit(self, turn: _Turn, *, release: bool = True) -> None: ...
