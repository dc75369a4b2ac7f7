"""A chaos run: the scenarios chosen, each on a store of its own, measured, reported.

Every scenario but the worker crashes is a deterministic simulation
(:mod:`trilha.chaos.simulate`); the crashes need real processes, so that one
runs ``trilha worker`` processes in real time and SIGKILLs them
(:mod:`trilha.chaos.crash`). Each scenario's executions are then measured from
its store and its process log (:mod:`trilha.chaos.measure`), and the run's
criteria are those of all its executions together (criterion 6: of the
half-dependencies scenario; 7 and 8: of the partial failure's).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trilha
from trilha.chaos.crash import run_crashes
from trilha.chaos.measure import (
    FailingInputs,
    Measures,
    breaker_openings,
    fell_back,
    measure,
    outage_recoveries,
    verdicts,
)
from trilha.chaos.report import histogram, write_report
from trilha.chaos.scenarios import Scenario, matrix
from trilha.chaos.services import Services
from trilha.chaos.simulate import Run, digest, simulate, timeline
from trilha.config import Config, DependencyConfig, LoggingConfig, load_config
from trilha.core.flow import Flow, dependencies_used, load_flow
from trilha.core.percentiles import percentile
from trilha.errors import ConfigError
from trilha.flowfiles import flow_files, load_flow_file
from trilha.observability.logging import configure as configure_logging
from trilha.observability.logging import reset as reset_logging
from trilha.processors.registry import Processors

#: recovery-time histogram buckets, in seconds
EDGES = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    flows: Path | None = None
    config: Path | None = None
    scenario: str = "all"
    executions: int = 200
    concurrency: int = 50
    seed: int = 1
    report: Path | None = None
    #: where the scenarios' stores and logs go (a temporary folder when None)
    work: Path | None = None


#: (scenario name, executions ended, executions in all) while a scenario runs
Progress = Callable[[str, int, int], None]


def built_in_flows(processors: Processors) -> list[Flow]:
    folder = resources.files("trilha.chaos").joinpath("flows")
    return [
        load_flow(json.loads(entry.read_text(encoding="utf-8")), processors.node_types)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]


async def _answers(base_url: str) -> bool:
    """Whether a declared dependency's address takes a connection at all."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", port), 2
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def select(scenarios: list[Scenario], name: str) -> list[Scenario]:
    if name == "all":
        return scenarios
    chosen = [s for s in scenarios if s.name == name]
    if not chosen:
        known = ", ".join(s.name for s in scenarios)
        raise ConfigError(f"--scenario {name!r}: expected all or one of {known}")
    return chosen


async def run_chaos(options: ChaosOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the scenarios ``options`` choose; the report (also written to ``report``)."""
    if options.executions < 1 or options.concurrency < 1:
        raise ConfigError("--executions and --concurrency must be at least 1")
    processors = Processors.from_entry_points()
    if options.flows is None:
        flows = built_in_flows(processors)
    else:
        flows = [load_flow_file(p, processors.node_types) for p in flow_files(options.flows)]
        if not flows:
            raise ConfigError(f"--flows {options.flows}: no flow files there")
    await processors.aclose()
    base = load_config(options.config) if options.config else Config()
    used = sorted({name for flow in flows for _, name in dependencies_used(flow)})
    declared = {name: dep.base_url for name, dep in base.dependencies.items()}
    scenarios = select(matrix(used, called_with_input(flows)), options.scenario)
    work = options.work or Path(tempfile.mkdtemp(prefix="trilha-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    services = await Services.start(used, declared)
    warnings = [
        f"dependency '{name}' ({declared[name]}) does not answer: its calls will fail in"
        " every scenario, whatever is injected"
        for name in sorted(set(used) & set(declared))
        if not await _answers(declared[name])
    ]
    warnings += [
        f"{s.name}: dependency '{failing.dependency}' is your own service"
        f" ({declared[failing.dependency]}): trilha cannot make it fail {how},"
        " so this scenario injects nothing"
        for s in scenarios
        for failing, how in (
            (s.input_failures, "for some inputs"),
            (s.random_failures, "at random"),
        )
        if failing is not None and failing.dependency in declared
    ]
    config = _rewired(base, services, used)
    results: list[dict[str, Any]] = []
    total = Measures()
    basic: Measures | None = None
    partial: Measures | None = None
    try:
        for scenario in scenarios:
            await services.reset()
            folder = work / scenario.name
            folder.mkdir(parents=True, exist_ok=True)
            result, measured = await _scenario(
                scenario, options, flows, config, services, folder, progress
            )
            results.append(result)
            total.add(measured)
            if scenario.basic_path:
                basic = measured
            if scenario.input_failures is not None:
                partial = measured
    finally:
        await services.close()
    criteria = verdicts(total, basic, partial)
    passed = all(c["verdict"] != "fail" for c in criteria)
    report: dict[str, Any] = {
        "trilha": trilha.__version__,
        "seed": options.seed,
        "startedAt": datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z"),
        "wallSeconds": round(time.time() - started, 3),
        "settings": {
            "executions": options.executions,
            "concurrency": options.concurrency,
            "store": "sqlite (one file per scenario)",
            "flows": str(options.flows) if options.flows else "built-in",
            "config": str(options.config) if options.config else None,
            "scenarios": [s.name for s in scenarios],
            "work": str(work),
        },
        "passed": passed,
        "warnings": warnings,
        "replay": [s["replay"] for s in results if "replay" in s],
        "criteria": criteria,
        "scenarios": results,
    }
    if options.report is not None:
        write_report(report, options.report)
    return report


def replay_command(options: ChaosOptions, scenario: str) -> str:
    """The command that runs a scenario again with the same faults."""
    parts = ["trilha chaos"]
    if options.flows is not None:
        parts.append(f"--flows {shlex.quote(str(options.flows))}")
    if options.config is not None:
        parts.append(f"--config {shlex.quote(str(options.config))}")
    parts += [
        f"--scenario {scenario}",
        f"--executions {options.executions}",
        f"--concurrency {options.concurrency}",
        f"--seed {options.seed}",
    ]
    return " ".join(parts)


def called_with_input(flows: list[Flow]) -> str | None:
    """The first dependency the flows call with a variable in the URL: the one whose
    inputs can differ, so the one a partial failure is staged on."""
    for flow in flows:
        for node_id, name in dependencies_used(flow):
            if "{{" in str(getattr(flow.node(node_id), "url", "")):
                return name
    return None


def _rewired(base: Config, services: Services, used: list[str]) -> Config:
    """The configuration the engine runs with: every dependency through its gate, the
    messages into memory (the channel is not under test), the trail kept whole."""
    dependencies = dict(base.dependencies)
    for name in used:
        old = dependencies.get(name)
        url = services.base_url(name)
        dependencies[name] = (
            old.model_copy(update={"base_url": url})
            if old is not None
            else DependencyConfig(base_url=url, timeout_seconds=5)
        )
    return base.model_copy(
        update={
            "dependencies": dependencies,
            "channel": base.channel.model_copy(update={"kind": "memory"}),
            "logging": LoggingConfig(level="WARN", format="json", store_level="DEBUG"),
        }
    )


async def _scenario(
    scenario: Scenario,
    options: ChaosOptions,
    flows: list[Flow],
    config: Config,
    services: Services,
    folder: Path,
    progress: Progress | None,
) -> tuple[dict[str, Any], Measures]:
    log_path = folder / "process.log"
    began = time.monotonic()
    failures = scenario.input_failures
    inputs = None
    if failures is not None and services.fail_inputs(failures, options.seed):
        callers = frozenset(
            node_id
            for flow in flows
            for node_id, name in dependencies_used(flow)
            if name == failures.dependency
        )
        inputs = FailingInputs(failures, options.seed, callers)
    flaky = scenario.random_failures
    flaky_injected = flaky is not None and services.fail_randomly(flaky, options.seed)
    flaky_nodes = frozenset(
        node_id
        for flow in flows
        for node_id, name in dependencies_used(flow)
        if flaky is not None and name == flaky.dependency
    )

    def report(ended: int, total: int) -> None:
        if progress is not None:
            progress(scenario.name, ended, total)

    # the scenario's process log, read back for its outages (a file: it may be long)
    with open(log_path, "w", encoding="utf-8") as log_file:  # noqa: ASYNC230
        configure_logging(config.logging, stream=log_file)
        try:
            runner = run_crashes if scenario.real_processes else simulate
            run: Run = await runner(
                scenario,
                flows=flows,
                config=config,
                services=services,
                executions=options.executions,
                concurrency=options.concurrency,
                seed=options.seed,
                folder=folder,
                on_progress=report,
            )
        finally:
            reset_logging()
    try:
        measured = await measure(run.store, run.started_ids, now=run.ended, inputs=inputs)
        history = await digest(run.store, run.started_ids) if not scenario.real_processes else None
        gave_up = await fell_back(run.store, run.started_ids, flaky_nodes) if flaky else 0
    finally:
        await run.store.close()
    lines = []
    for raw in log_path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    measured.recovery_seconds += outage_recoveries(lines)
    measured.outcomes.setdefault("unfinished", 0)  # measured: executions not ended
    if inputs is not None:
        run.faults["failed_by_input"] += services.failed_inputs()
    flaky_requests, flaked = services.flaky_calls()
    if flaky is not None:
        run.faults["failed_at_random"] += flaked
    values = measured.recovery_seconds
    result: dict[str, Any] = {
        "name": scenario.name,
        "description": scenario.description,
        "simulated": not scenario.real_processes,
        "executions": options.executions,
        "wallSeconds": round(time.monotonic() - began, 3),
        "simulatedSeconds": round(run.seconds, 3) if not scenario.real_processes else None,
        "outcomes": dict(sorted(measured.outcomes.items())),
        "faults": dict(sorted(run.faults.items())),
        "criteria": {
            str(c["id"]): {k: c[k] for k in ("measured", "display", "verdict", "detail")}
            for c in verdicts(
                measured,
                measured if scenario.basic_path else None,
                measured if failures is not None else None,
            )
        },
        "recoverySeconds": {
            "count": len(values),
            "p50": round(percentile(values, 0.5), 3) if values else None,
            "p99": round(percentile(values, 0.99), 3) if values else None,
            "max": round(max(values), 3) if values else None,
            "histogram": histogram(values, EDGES),
        },
        "timeline": timeline(run),
        "violations": measured.violations,
        "traceProblems": measured.trace_problems,
        "historyDigest": history,
        "store": str(folder / f"{scenario.name}.db"),
        "processLog": [str(p) for p in sorted(folder.glob("*.log"))],  # noqa: ASYNC240
    }
    if failures is not None:
        result["partialFailure"] = {
            "dependency": failures.dependency,
            "share": round(failures.share, 3),
            "status": failures.status,
            "injected": inputs is not None,
            "goodInputs": measured.good_inputs,
            "goodServed": measured.good_served,
            "badInputs": measured.bad_inputs,
            "badFellBack": measured.bad_fell_back,
        }
    if flaky is not None:
        result["flakyDependency"] = {
            "dependency": flaky.dependency,
            "share": flaky.share,
            "injected": flaky_injected,
            "calls": flaky_requests,
            "failedCalls": flaked,
            "breakerOpenings": breaker_openings(lines, flaky.dependency),
            "fellBack": gave_up,
        }
    if any(c["verdict"] == "fail" for c in result["criteria"].values()):
        result["failingSeed"] = options.seed
        result["replay"] = replay_command(options, scenario.name)
    return result, measured
