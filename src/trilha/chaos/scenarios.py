"""The scenario matrix of ``trilha chaos``: one scenario per kind of fault, everything
at once, half the dependencies down, one dependency failing for a share of its inputs,
and one failing a share of its calls at random. Times are seconds since the scenario
began (simulated time, except for worker crashes, which are real processes)."""

from __future__ import annotations

from dataclasses import dataclass

from trilha.core.faults import (
    Corruption,
    Delay,
    DependencyOutage,
    FaultPlan,
    Latency,
    ProcessorFaults,
    Window,
    chance,
)

#: the dependencies the built-in flow calls (half of them go down in one scenario)
BUILT_IN_DEPENDENCIES = ("crm", "score", "agenda", "notify")


@dataclass(frozen=True, slots=True)
class InputFailures:
    """A dependency that is up but answers ``status`` to a share of its inputs: the same
    request the same way every time, decided by its method and path (hashed with the
    seed), not drawn at random per call. Retrying such a request never mends it; the
    other requests always work (issue 22's CRM failing the codes starting with 9)."""

    dependency: str
    share: float
    status: int = 500

    def fails(self, seed: int, method: str, path: str) -> bool:
        """Whether the dependency fails ``method path`` (``path`` with its query)."""
        return chance(seed, "input", self.dependency, method.upper(), path) < self.share


#: what a flaky dependency's failed call is, in equal shares: a refusal saying it is
#: overloaded, a rate limit, a connection reset (each counts against it by default)
FLAKY_FAULTS: tuple[str, ...] = ("503", "429", "reset")


@dataclass(frozen=True, slots=True)
class RandomFailures:
    """A dependency that is up but fails a share of its calls at random, whatever they
    ask: call ``n`` fails by the seed, so a run replays, and the same request asked
    again may well be answered (issue 17: "a dependency failing 30 % of calls at
    random"). Unlike :class:`InputFailures`, retrying mends it."""

    dependency: str
    share: float

    def fault(self, seed: int, n: int) -> str | None:
        """The fault served to the dependency's ``n``-th request, or ``None``: answer it."""
        if chance(seed, "flaky", self.dependency, n) >= self.share:
            return None
        pick = chance(seed, "flaky-fault", self.dependency, n)
        return FLAKY_FAULTS[int(pick * len(FLAKY_FAULTS))]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    plan: FaultPlan
    #: run by real ``trilha worker`` processes in real time (SIGKILL needs processes)
    real_processes: bool = False
    #: criterion 6 is measured here: the share that finished their basic path
    basic_path: bool = False
    #: a dependency failing for some inputs; criteria 7 and 8 are measured here
    input_failures: InputFailures | None = None
    #: a dependency failing a share of its calls at random, with the product's defaults
    random_failures: RandomFailures | None = None


def _outages(dependencies: list[str]) -> list[DependencyOutage]:
    return [
        DependencyOutage(
            dependencies=dependencies,
            windows=[Window(start_seconds=20, duration_seconds=25, every_seconds=120)],
        )
    ]


def matrix(dependencies: list[str], by_input: str | None = None) -> list[Scenario]:
    """Every scenario, for a run whose flows call ``dependencies``; ``by_input`` is the
    one a share of whose inputs fail (default: the first), best one the flows call with
    an input in the URL."""
    half = dependencies[: max(1, len(dependencies) // 2)] if dependencies else []
    partial = by_input or (dependencies[0] if dependencies else None)
    processor = ProcessorFaults(probability=0.15)
    latency = Latency(
        processor=Delay(probability=0.3, seconds=0.05, jitter_seconds=0.2),
        dependency=Delay(probability=0.3, seconds=0.5, jitter_seconds=6.0),
        store=Delay(probability=0.3, seconds=0.002, jitter_seconds=0.05),
    )
    corruption = Corruption(probability=0.25)
    store = [
        Window(start_seconds=15, duration_seconds=3, every_seconds=60),
        Window(start_seconds=45, duration_seconds=8, every_seconds=120),
    ]
    everything = FaultPlan(
        processor=ProcessorFaults(probability=0.08),
        latency=latency,
        corruption=Corruption(probability=0.1),
        store_outages=store,
        dependency_outages=_outages(dependencies) if dependencies else [],
        overload=True,
    )
    return [
        Scenario(
            "processor_failures",
            "15 % of node runs raise a transient error before doing their work",
            FaultPlan(processor=processor),
        ),
        Scenario(
            "latency",
            "30 % of calls run late: nodes by 50-250 ms, the store by 2-52 ms, dependencies"
            " by 0.5-6.5 s (some outlast their 5 s timeout)",
            FaultPlan(latency=latency),
        ),
        Scenario(
            "corrupted_data",
            "25 % of executions get garbage written into their variables, their current"
            " node or their latest checkpoint in the real store while they wait",
            FaultPlan(corruption=corruption),
        ),
        Scenario(
            "dependencies_disconnected",
            "every dependency's server stops listening for 25 s at 20 s, and again every"
            " 2 minutes, then comes back",
            FaultPlan(dependency_outages=_outages(dependencies) if dependencies else []),
        ),
        Scenario(
            "store_unavailable",
            "the store answers nothing for 3 s every minute (from 15 s) and for 8 s every"
            " 2 minutes (from 45 s)",
            FaultPlan(store_outages=store),
        ),
        Scenario(
            "overload",
            "every execution starts at once, far beyond what one worker runs at a time",
            FaultPlan(overload=True),
        ),
        Scenario(
            "worker_crashes",
            "three real `trilha worker` processes; one is SIGKILLed every 3 s and a new"
            " one started in its place",
            FaultPlan(worker_kill_every_seconds=3.0),
            real_processes=True,
        ),
        Scenario(
            "everything",
            "all of the above at once (but the crashes): failing nodes, latency,"
            " corruption, dependency and store outages, every execution started at once",
            everything,
        ),
        Scenario(
            "half_dependencies_down",
            f"{', '.join(half) or 'no dependency'} down for the whole run"
            f" (half of {len(dependencies)})",
            FaultPlan(dependency_outages=[DependencyOutage(dependencies=half)] if half else []),
            basic_path=True,
        ),
        Scenario(
            "partial_dependency_failure",
            f"{partial} answers 500 to a third of its requests, the same ones every time"
            " (by input, not at random), and 200 to the rest"
            if partial
            else "no dependency to fail",
            FaultPlan(),
            input_failures=InputFailures(partial, 1 / 3) if partial else None,
        ),
        Scenario(
            "flaky_dependency",
            f"{partial} fails 30 % of its calls at random (503, 429 or a connection reset,"
            " in equal shares) and answers the rest, with the product's default retry"
            " rounds and circuit breaker"
            if partial
            else "no dependency to fail",
            FaultPlan(),
            random_failures=RandomFailures(partial, 0.3) if partial else None,
        ),
    ]


def names() -> list[str]:
    return [s.name for s in matrix(list(BUILT_IN_DEPENDENCIES))]
