"""Fault injection inside the engine: processors that fail or lag, a store that lags or
is away. Off unless a chaos run wraps the engine's parts with these; the plan
(:class:`~trilha.core.faults.FaultPlan`) and the seed decide every fault.

Time is the engine's clock, and a delay longer than an effectful node's timeout
is the timeout the engine would have met (the node fails with ``NodeTimeout``).
In the simulation (``time_passes=False``) a delay takes no time at all: one
worker runs one execution at a time there, so a delay would hold every other
execution behind it, which a real worker (64 steps in flight) does not do; a
delay there shows only as the timeouts it causes.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

from trilha.core.faults import FaultPlan
from trilha.engine.clock import Clock
from trilha.errors import NodeError, NodeTimeout, StoreUnavailable
from trilha.processors.base import Processor, StepContext, StepResult
from trilha.store.base import Store


class InjectedFault(NodeError):
    """A failure the chaos plan injected into a node run (a transient error)."""

    code = "injected_fault"


class FaultCounter(Counter[str]):
    """How many faults of each kind were injected (the report's ``faults``)."""


class FaultyProcessor:
    """One node type's processor behind the plan: it may fail before running, or run
    late (a dependency call later still: its latency counts twice)."""

    def __init__(
        self,
        inner: Processor,
        plan: FaultPlan,
        seed: int,
        clock: Clock,
        counts: FaultCounter,
        *,
        time_passes: bool = True,
    ) -> None:
        self.inner = inner
        self.time_passes = time_passes
        self.node_type = inner.node_type
        self.node_model = inner.node_model
        self.effectful = inner.effectful
        self.plan = plan
        self.seed = seed
        self.clock = clock
        self.counts = counts
        self._runs: Counter[tuple[str, str]] = Counter()

    async def run(self, node: Any, ctx: StepContext) -> StepResult:
        key = (ctx.execution_id, node.id)
        self._runs[key] += 1
        run = self._runs[key]
        delay = self.plan.delay(self.seed, "processor", *key, run)
        if getattr(node, "dependency", None) is not None:
            delay += self.plan.delay(self.seed, "dependency", *key, run)
        if delay:
            self.counts["latency"] += 1
            timeout = node.timeout_seconds if self.effectful else None
            if timeout is not None and delay > timeout:
                if self.time_passes:
                    await self.clock.sleep(timeout)
                self.counts["timeout"] += 1
                raise NodeTimeout(
                    f"node '{node.id}' took longer than {timeout:g}s (injected latency)",
                    kind="timeout",
                )
            if self.time_passes:
                await self.clock.sleep(delay)
        if self.plan.processor_fails(self.seed, ctx.execution_id, node.id, node.type, run):
            self.counts["processor_failure"] += 1
            raise InjectedFault(
                f"injected {self.plan.processor.kind} failure in node '{node.id}' (run {run})",
                kind=self.plan.processor.kind,
            )
        return await self.inner.run(node, ctx)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def faulty_processor(
    inner: Processor,
    plan: FaultPlan,
    seed: int,
    clock: Clock,
    counts: FaultCounter,
    *,
    time_passes: bool = True,
) -> Processor:
    """``inner`` behind the plan, typed as the protocol it stands for (the protocol's
    class attributes are the wrapped processor's, copied per instance)."""
    return cast(
        Processor,
        FaultyProcessor(inner, plan, seed, clock, counts, time_passes=time_passes),
    )


#: store methods that never fail or lag: they are the process's, not the store's
_UNTOUCHED = frozenset({"open", "close", "subscribe_wake", "tamper", "migrate"})


class FaultyStore:
    """A store behind the plan: away (:class:`StoreUnavailable`) during its outage
    windows, late by the plan's store latency; otherwise the real store answers."""

    def __init__(
        self,
        store: Store,
        plan: FaultPlan,
        seed: int,
        clock: Clock,
        began: float,
        counts: FaultCounter,
        *,
        time_passes: bool = True,
    ) -> None:
        self.inner = store
        self.time_passes = time_passes
        self.plan = plan
        self.seed = seed
        self.clock = clock
        self.began = began
        self.counts = counts
        self._calls = 0

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in _UNTOUCHED or not inspect.iscoroutinefunction(attr):
            return attr
        method = cast(Callable[..., Awaitable[Any]], attr)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            if self.plan.store_down(self.clock.now() - self.began):
                self.counts["store_refusal"] += 1
                raise StoreUnavailable("chaos: the store is away (injected outage)")
            delay = self.plan.delay(self.seed, "store", name, self._calls)
            if delay:
                self.counts["store_latency"] += 1
                if self.time_passes:
                    await self.clock.sleep(delay)
            return await method(*args, **kwargs)

        return call


def faulty_store(
    store: Store,
    plan: FaultPlan,
    seed: int,
    clock: Clock,
    began: float,
    counts: FaultCounter,
    *,
    time_passes: bool = True,
) -> Store:
    """``store`` behind the plan, typed as the protocol it forwards to."""
    return cast(
        Store, FaultyStore(store, plan, seed, clock, began, counts, time_passes=time_passes)
    )
