"""Fault plans: which faults a chaos run injects, and the same decisions every time.

A plan is data (a scenario of ``trilha chaos``, or a user's own in TOML or JSON).
A decision never draws from a shared random stream: each is a pure function of
the seed and what is being decided (:func:`chance`), hashed. So the faults an
execution meets do not depend on the order in which a worker happens to reach
them, and one seed always gives the same run: the property a failing seed's
replay rests on.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, model_validator

from trilha.core.wire import WireModel

Probability = float
CorruptionTarget = Literal["variables", "current_node", "checkpoint"]
CORRUPTION_TARGETS: tuple[CorruptionTarget, ...] = ("variables", "current_node", "checkpoint")


def chance(seed: int, *key: object) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``key``: the same question, the same
    answer, in any process and in any order."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Window(WireModel):
    """A stretch of the run's time, in seconds since it began; again every
    ``every_seconds`` when given (a fault that recurs however long the run lasts)."""

    start_seconds: float = Field(ge=0, le=86_400)
    duration_seconds: float = Field(gt=0, le=86_400)
    every_seconds: float | None = Field(default=None, gt=0, le=86_400)

    @model_validator(mode="after")
    def _shorter_than_its_period(self) -> Window:
        if self.every_seconds is not None and self.duration_seconds >= self.every_seconds:
            raise ValueError("duration_seconds must be shorter than every_seconds")
        return self

    def _offset(self, elapsed: float) -> float | None:
        """Seconds since the window's latest opening (``None`` before the first)."""
        if elapsed < self.start_seconds:
            return None
        since = elapsed - self.start_seconds
        return since % self.every_seconds if self.every_seconds else since

    def covers(self, elapsed: float) -> bool:
        offset = self._offset(elapsed)
        return offset is not None and offset < self.duration_seconds

    def end_after(self, elapsed: float) -> float | None:
        """When the opening covering ``elapsed`` closes (``None``: not covered)."""
        offset = self._offset(elapsed)
        if offset is None or offset >= self.duration_seconds:
            return None
        return elapsed - offset + self.duration_seconds

    def next_change(self, elapsed: float) -> float | None:
        """The first moment after ``elapsed`` when the window opens or closes."""
        offset = self._offset(elapsed)
        if offset is None:
            return self.start_seconds
        opened = elapsed - offset
        if offset < self.duration_seconds:
            return opened + self.duration_seconds
        return opened + self.every_seconds if self.every_seconds else None


class ProcessorFaults(WireModel):
    """Node runs that raise a transient error before doing their work."""

    #: the share of node runs that fail (each decided on its own)
    probability: Probability = Field(default=0.0, ge=0, le=1)
    #: and, whatever the probability, the first N runs of each node of each execution
    first_calls: int = Field(default=0, ge=0, le=100)
    #: node types affected (empty: every type)
    node_types: list[str] = Field(default_factory=list)
    #: how the failure reads to the recovery policy (all are transient kinds)
    kind: Literal["server", "timeout", "connection"] = "server"


class Delay(WireModel):
    """Extra time for a share of the calls: a fixed part plus a random part."""

    probability: Probability = Field(default=1.0, ge=0, le=1)
    seconds: float = Field(default=0.0, ge=0, le=3_600)
    jitter_seconds: float = Field(default=0.0, ge=0, le=3_600)


class Latency(WireModel):
    """Extra time before a node runs, a dependency answers or the store answers."""

    processor: Delay = Field(default_factory=Delay)
    dependency: Delay = Field(default_factory=Delay)
    store: Delay = Field(default_factory=Delay)


class Corruption(WireModel):
    """Garbage written into the real store: an execution's variables, its current
    node, or its latest checkpoint (with the row, so recovery must walk back)."""

    #: the share of executions that get corrupted, once each, while they wait
    probability: Probability = Field(default=0.0, ge=0, le=1)
    targets: list[CorruptionTarget] = Field(
        default_factory=lambda: list(CORRUPTION_TARGETS), min_length=1
    )


class DependencyOutage(WireModel):
    """Declared dependencies whose servers stop listening for a while (or for the whole
    run: no windows), then come back."""

    dependencies: list[str] = Field(min_length=1)
    windows: list[Window] = Field(default_factory=list)

    def down(self, name: str, elapsed: float) -> bool:
        if name not in self.dependencies:
            return False
        return not self.windows or any(w.covers(elapsed) for w in self.windows)


class FaultPlan(WireModel):
    """Everything one scenario injects; the defaults inject nothing."""

    processor: ProcessorFaults = Field(default_factory=ProcessorFaults)
    latency: Latency = Field(default_factory=Latency)
    corruption: Corruption = Field(default_factory=Corruption)
    #: the store answers nothing (StoreUnavailable) during these windows
    store_outages: list[Window] = Field(default_factory=list)
    dependency_outages: list[DependencyOutage] = Field(default_factory=list)
    #: start every execution at once instead of ``concurrency`` at a time
    overload: bool = False
    #: SIGKILL a worker process every so many seconds (real processes, real time)
    worker_kill_every_seconds: float | None = Field(default=None, gt=0, le=3_600)

    @model_validator(mode="after")
    def _corruption_targets_unique(self) -> FaultPlan:
        if len(set(self.corruption.targets)) != len(self.corruption.targets):
            raise ValueError("corruption.targets: each target at most once")
        return self

    def store_down(self, elapsed: float) -> bool:
        return any(w.covers(elapsed) for w in self.store_outages)

    def dependency_down(self, name: str, elapsed: float) -> bool:
        return any(o.down(name, elapsed) for o in self.dependency_outages)

    def store_back_at(self, elapsed: float) -> float | None:
        """When the store outage covering ``elapsed`` ends (``None``: it is up)."""
        ends = [e for w in self.store_outages if (e := w.end_after(elapsed)) is not None]
        return max(ends) if ends else None

    def next_change(self, elapsed: float) -> float | None:
        """The first moment after ``elapsed`` when something switches on or off: a
        simulation wakes there (``None``: nothing ever will)."""
        windows = [*self.store_outages, *(w for o in self.dependency_outages for w in o.windows)]
        moments = [m for w in windows if (m := w.next_change(elapsed)) is not None]
        return min(moments) if moments else None

    # decisions -------------------------------------------------------------------------

    def processor_fails(
        self, seed: int, execution_id: str, node_id: str, node_type: str, run: int
    ) -> bool:
        """Whether the ``run``-th run (from 1) of a node of an execution fails."""
        faults = self.processor
        if faults.node_types and node_type not in faults.node_types:
            return False
        if run <= faults.first_calls:
            return True
        return chance(seed, "processor", execution_id, node_id, run) < faults.probability

    def delay(self, seed: int, where: str, *key: object) -> float:
        """Extra seconds for a call at ``where`` (processor, dependency, store)."""
        delay: Delay = getattr(self.latency, where)
        if delay.seconds == 0 and delay.jitter_seconds == 0:
            return 0.0
        if chance(seed, "latency?", where, *key) >= delay.probability:
            return 0.0
        return delay.seconds + delay.jitter_seconds * chance(seed, "latency", where, *key)

    def corrupts(self, seed: int, execution_id: str) -> str | None:
        """The target garbage goes into for this execution, or ``None``."""
        corruption = self.corruption
        if chance(seed, "corrupt?", execution_id) >= corruption.probability:
            return None
        pick = int(chance(seed, "corrupt", execution_id) * len(corruption.targets))
        return corruption.targets[min(pick, len(corruption.targets) - 1)]
