"""The ``trilha`` command: thin, it parses, calls the library and prints.

Errors print their cause chain and exit non-zero; ``-v`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Column, Table

from trilha import __version__ as trilha_version
from trilha.channels.memory import MemoryChannel
from trilha.channels.terminal import TerminalChannel
from trilha.config import Config, EngineConfig, LoggingConfig, load_config
from trilha.core.execution import Execution, iso
from trilha.core.flow import Flow, flow_json_schema
from trilha.core.signals import waited_event
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.operator import Operator
from trilha.engine.signals import send_signal
from trilha.engine.sweeper import Sweeper
from trilha.errors import ConfigError, ExecutionNotFound, FlowError, TrilhaError
from trilha.flowfiles import check_flow_file, flow_files, load_flow_file
from trilha.inbound import InboundContent, language_tag, with_language
from trilha.observability import tracing
from trilha.observability.logging import configure as configure_logging
from trilha.observability.metrics import Listener
from trilha.observability.terminal import SafeConsole, field, json_text, whole_column
from trilha.processors.registry import Processors
from trilha.runtime import Runtime, load_folder, publish_all, runtime
from trilha.store import open_store
from trilha.views import execution_view

T = TypeVar("T")

app = typer.Typer(
    name="trilha",
    help="A durable, self-healing execution engine for conversational flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: every print of the CLI goes through these: stored text (a contact's message, a flow's
#: node id, a service's error) reaches the operator's terminal shown, never obeyed
out = SafeConsole(highlight=False, soft_wrap=True, emoji=False)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
_state = {"verbose": False}

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="TRILHA_STORE", help="Store URL (default sqlite:///./trilha.db)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Configuration file (default ./trilha.toml if present)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
LogLevelOpt = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        envvar="TRILHA_LOG_LEVEL",
        help="Process log level on stdout: DEBUG, INFO, WARN, ERROR, CRITICAL or OFF"
        " (default \\[logging] level, INFO).",
    ),
]


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    _state["verbose"] = verbose


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# ------------------------------------------------------------------------------------ chaos

#: `trilha chaos` exits with this when a criterion misses its required level
CHAOS_FAILED_EXIT = 4


@app.command()
def chaos(
    flows: Annotated[
        Path | None,
        typer.Option("--flows", help="Folder of flows to run (default: the built-in flow)."),
    ] = None,
    config: ConfigOpt = None,
    scenario: Annotated[
        str, typer.Option("--scenario", help="One scenario's name, or all.")
    ] = "all",
    executions: Annotated[
        int, typer.Option("--executions", min=1, max=1_000_000, help="Per scenario.")
    ] = 200,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=100_000, help="Conversations open at once."),
    ] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same faults.")] = 1,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Folder for report.json and report.html."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the fault-injection scenarios and measure the eight validation criteria.

    Every scenario but the worker crashes is a deterministic simulation on a fake
    clock (the same --seed replays the same history); the crashes SIGKILL real
    `trilha worker` processes. Exit 4 if a criterion misses its required level."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from trilha.chaos.runner import ChaosOptions, run_chaos

    options = ChaosOptions(
        flows=flows,
        config=config,
        scenario=scenario,
        executions=executions,
        concurrency=concurrency,
        seed=seed,
        report=report,
    )
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=False,
        disable=as_json,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, ended: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=ended)

        result = _run(run_chaos(options, progress))
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {field(warning)}")
    if as_json:
        out.print_json(data=result, ensure_ascii=True)
    else:
        _print_chaos(result)
    if not result["passed"]:
        err.print("[red]a criterion missed its required level[/red]; replay the same faults with:")
        for command in result["replay"] or [f"trilha chaos --seed {seed}"]:
            err.print(f"  {command}", markup=False, highlight=False)
        raise typer.Exit(CHAOS_FAILED_EXIT)


def _print_chaos(result: dict[str, Any]) -> None:
    symbols = {
        "target": "[green]target[/green]",
        "pass": "[green]pass[/green]",
        "fail": "[red]FAIL[/red]",
        "n/a": "[dim]n/a[/dim]",
    }
    table = Table(title=f"trilha chaos, seed {result['seed']}", show_lines=False)
    for column in ("#", "criterion", "required", "measured", "verdict"):
        table.add_column(column)
    for c in result["criteria"]:
        table.add_row(
            str(c["id"]),
            field(c["name"]),
            field(c["required"]),
            field(c["display"]),
            symbols.get(c["verdict"], c["verdict"]),
        )
    out.print(table)
    scenarios = Table(title="scenarios", show_lines=False)
    for column in ("scenario", "executions", "outcomes", "faults injected", "wall s"):
        scenarios.add_column(column)
    for s in result["scenarios"]:
        scenarios.add_row(
            s["name"] + (" [red](failed)[/red]" if "failingSeed" in s else ""),
            str(s["executions"]),
            field(", ".join(f"{k} {v}" for k, v in s["outcomes"].items() if v)),
            field(", ".join(f"{k} {v}" for k, v in s["faults"].items())) or "-",
            f"{s['wallSeconds']:.1f}",
        )
    out.print(scenarios)
    where = result["settings"].get("work")
    out.print(f"stores and process logs: {where}", markup=False)


# ---------------------------------------------------------------------------------- migrate


@app.command()
def migrate(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Apply the store's pending schema migrations (safe to run from many machines).

    On PostgreSQL, `serve` and `worker` refuse a schema that is not current: run this
    first, and again after upgrading trilha. The SQLite default migrates itself."""

    async def main() -> tuple[str, list[str]]:
        st = open_store(store, auto_migrate=False)
        return repr(st), await st.migrate()

    where, applied = _run(main())
    if as_json:
        out.print_json(data={"store": where, "applied": applied})
    elif applied:
        out.print(f"{where}: applied {', '.join(applied)}", markup=False)
    else:
        out.print(f"{where}: the schema is current, nothing to apply", markup=False)


# ----------------------------------------------------------------------------------- schema


@app.command()
def schema() -> None:
    """Print the JSON Schema of flows (every registered node type)."""
    types = Processors.from_entry_points().node_types
    sys.stdout.write(json.dumps(flow_json_schema(types), indent=2) + "\n")


# --------------------------------------------------------------------------------- validate


@app.command()
def validate(
    flows: Annotated[list[Path], typer.Argument(help="Flow files (JSON or YAML) or folders.")],
) -> None:
    """Check flows; one line per problem, exit 1 if any flow is invalid."""
    types = Processors.from_entry_points().node_types
    failed = False
    files: list[Path] = []
    for path in flows:
        files.extend(flow_files(path) if path.is_dir() else [path])
    for path in files:
        flow, problems = check_flow_file(path, types)
        for problem in problems:
            out.print(field(f"{path}: {problem}"))
        if flow is None:
            failed = True
        elif not any(p.severity == "error" for p in problems):
            warnings = sum(1 for p in problems if p.severity == "warning")
            note = f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
            err.print(
                f"[green]ok[/green] {field(str(path))}: flow '{flow.id}' v{flow.version},"
                f" {len(flow.nodes)} nodes{note}"
            )
    raise typer.Exit(1 if failed else 0)


# -------------------------------------------------------------------------------------- run


def _parse_vars(pairs: list[str]) -> dict[str, Any]:
    from trilha.engine.engine import set_path

    variables: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--var {pair!r}: expected KEY=VALUE")
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        set_path(variables, key.strip(), value)
    return variables


def _load_flow_arg(flow: str, processors: Processors) -> Flow | None:
    """The flow file FLOW names, or ``None`` when FLOW is a flow id."""
    path = Path(flow)
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.exists():
        if not path.exists():
            raise FlowError(f"{path}: no such flow file")
        return load_flow_file(path, processors.node_types)
    return None


async def _resolve_flow(rt: Runtime, flow: str, loaded: Flow | None) -> tuple[str, int]:
    if loaded is not None:
        return loaded.id, await rt.engine.publish(loaded)
    stored = await rt.engine.flow(flow)
    return stored.id, stored.version


@app.command()
def run(
    flow: Annotated[
        str, typer.Argument(help="A flow file, or the id of a flow in --flows or the store.")
    ],
    flows: Annotated[
        Path | None, typer.Option("--flows", help="Folder of flows to publish first.")
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    var: Annotated[
        list[str], typer.Option("--var", help="Start variable KEY=VALUE (JSON values parsed).")
    ] = [],  # noqa: B006
    institution: Annotated[str, typer.Option("--institution")] = "local",
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Default: a new id.")
    ] = None,
    contact: Annotated[str, typer.Option("--contact")] = "terminal",
    language: Annotated[
        str | None,
        typer.Option(
            "--language", help="The contact's language (BCP 47: pt-BR, en): contact.language."
        ),
    ] = None,
    inputs: Annotated[
        list[str], typer.Option("--input", help="The contact's next reply (repeatable).")
    ] = [],  # noqa: B006
    replace: Annotated[
        bool, typer.Option("--replace", help="Cancel the conversation's active execution.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a flow in the terminal: an interactive chat, or scripted with --input."""
    from trilha.engine.engine import new_id

    variables = _run_variables(_parse_vars(var), language)
    processors = Processors.from_entry_points()
    folder = load_folder(flows, processors) if flows is not None else []
    loaded = _load_flow_arg(flow, processors)
    interactive = not inputs and not as_json and sys.stdin.isatty()
    channel: Any = MemoryChannel() if as_json else TerminalChannel(out)

    async def main() -> Execution:
        if interactive:  # Ctrl-C at the prompt ends the chat at once, like Ctrl-D
            signal.signal(signal.SIGINT, signal.default_int_handler)
        async with runtime(store, config, channel=channel, processors=processors) as rt:
            await publish_all(rt, folder)
            flow_id, version = await _resolve_flow(rt, flow, loaded)
            execution = await rt.engine.start(
                flow_id,
                version=version,
                institution_id=institution,
                conversation_id=conversation or f"cli-{new_id()[:10]}",
                contact_id=contact,
                variables=variables,
                replace=replace,
                actor="cli",
            )
            pending = list(inputs)
            while True:
                await rt.worker.run_until_idle(execution.id)
                execution = await rt.store.get_execution(execution.id)
                if (
                    execution.status in (ExecutionStatus.WAITING_DELAY, ExecutionStatus.RECOVERING)
                    and execution.due_at
                ):  # a delay, a retry backoff or a dependency wait: run waits for it
                    await rt.engine.clock.sleep(execution.due_at - rt.engine.clock.now())
                    continue
                if execution.status is not ExecutionStatus.WAITING_INPUT:
                    break
                if waited_event(execution.waiting_for):
                    break  # a reply would not move it: a signal does (trilha signal)
                if pending:
                    text = pending.pop(0)
                    if not as_json:
                        out.print(f"[bold green]you>[/bold green] {field(text)}")
                elif interactive:
                    try:
                        text = out.input("[bold green]you>[/bold green] ")
                    except (EOFError, KeyboardInterrupt):
                        out.print()
                        break
                else:
                    break
                await rt.engine.send(execution.id, text)
            if as_json:
                transcript = await rt.store.transcript(execution.id)
                sys.stdout.write(
                    json_text(
                        {
                            "executionId": execution.id,
                            "status": execution.status.value,
                            "outcome": execution.outcome.value if execution.outcome else None,
                            "variables": execution.variables,
                            "transcript": [t.wire() for t in transcript],
                        }
                    )
                    + "\n"
                )
            return execution

    execution = _run(main())
    if not as_json:
        _print_status_line(execution)


def _run_variables(variables: dict[str, Any], language: str | None) -> dict[str, Any]:
    """The start variables with ``--language`` as ``contact.language``, checked as the
    API checks a start request's ``language``."""
    if language is None:
        return variables
    try:
        return with_language(variables, language_tag(language))
    except ValueError as exc:
        raise ConfigError(f"--language: {exc}") from None


def _print_status_line(ex: Execution, console: Console = err) -> None:
    extra = f" (outcome {ex.outcome.value})" if ex.outcome else ""
    where = f" at node '{ex.current_node_id}'" if not ex.status.terminal else ""
    console.print(f"[dim]execution {ex.id}: {ex.status.value}{extra}{field(where)}[/dim]")
    if ex.error and ex.status.terminal and ex.outcome is not Outcome.COMPLETED:
        console.print(f"[dim]  error: {field(str(ex.error.get('message')))}[/dim]")
    if ex.status is ExecutionStatus.WAITING_INPUT and waited_event(ex.waiting_for):
        event = waited_event(ex.waiting_for)
        console.print(
            f"[dim]  waits for event {field(str(event))};"
            f" continue with: trilha signal {ex.id} {field(str(event))} --payload JSON[/dim]"
        )
    elif ex.status is ExecutionStatus.WAITING_INPUT:
        console.print(f"[dim]  continue with: trilha send {ex.id} TEXT[/dim]")
    if ex.status is ExecutionStatus.PAUSED and ex.paused_from is not None:
        console.print(
            f"[dim]  paused from {ex.paused_from.value}; continue with: trilha resume {ex.id}[/dim]"
        )
    elif ex.status is ExecutionStatus.PAUSED and ex.waiting_for == "human":
        console.print(
            f"[dim]  a person holds the conversation; give it back with: trilha handback {ex.id}"
            " [--node NODE][/dim]"
        )


# ----------------------------------------------------------------------------------- worker


@app.command()
def worker(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    flows: Annotated[
        Path | None, typer.Option("--flows", help="Folder of flows to publish first.")
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit once nothing is due or running.")
    ] = False,
    lease_seconds: Annotated[
        float | None,
        typer.Option("--lease-seconds", help="Lease length (default from config, 30)."),
    ] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run workers and the outbox dispatcher over the store."""
    _work(
        store,
        config,
        flows,
        until_idle=until_idle,
        lease_seconds=lease_seconds,
        log_level=log_level,
    )


@app.command("metrics-server")
def metrics_server(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to serve /metrics on (default: \\[metrics] listen's, else 127.0.0.1).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default: \\[metrics] listen's, else 9464)."
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    flows: Annotated[
        Path | None, typer.Option("--flows", help="Folder of flows to publish first.")
    ] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run workers like `trilha worker` and serve Prometheus metrics at /metrics.

    The metrics span every institution and are served without a key, as on
    `\\[metrics] listen` of `trilha serve`: keep the address private (the default,
    127.0.0.1) or reachable by the scraper only."""
    _work(
        store,
        config,
        flows,
        until_idle=False,
        lease_seconds=None,
        serve=(host, port),
        log_level=log_level,
    )


def _with_level(config: LoggingConfig, level: str) -> LoggingConfig:
    """``config`` with the global level ``--log-level`` gave (validated like the file's)."""
    try:
        return LoggingConfig.model_validate({**config.model_dump(), "level": level})
    except ValidationError:
        raise ConfigError(
            f"--log-level {level!r}: expected one of DEBUG, INFO, WARN, ERROR, CRITICAL, OFF"
        ) from None


#: how often the metrics server reads the store's queue and per-state gauges
_STORE_GAUGES_SECONDS = 2.0


def _work(
    store: str | None,
    config: Path | None,
    flows: Path | None,
    *,
    until_idle: bool,
    lease_seconds: float | None,
    serve: tuple[str | None, int | None] | None = None,
    log_level: str | None = None,
) -> None:
    processors = Processors.from_entry_points()
    folder = load_folder(flows, processors) if flows is not None else []

    async def main() -> None:
        cfg = load_config(config)
        logging_cfg = cfg.logging
        if log_level is not None:
            logging_cfg = _with_level(logging_cfg, log_level)
        configure_logging(logging_cfg)
        tracing.start(cfg.tracing)  # refuses a set endpoint without the otel extra
        try:
            await _working(cfg)
        finally:
            tracing.shutdown()  # what is still queued goes to the collector

    async def _working(cfg: Config) -> None:
        if lease_seconds is not None:
            try:
                engine_cfg = EngineConfig.model_validate(
                    {**cfg.engine.model_dump(), "lease_seconds": lease_seconds}
                )
            except ValidationError as exc:
                raise ConfigError(
                    f"--lease-seconds {lease_seconds:g}: {exc.errors()[0]['msg']}"
                ) from None
            cfg = cfg.model_copy(update={"engine": engine_cfg})
        channel = None
        if cfg.channel.kind == "terminal":
            channel = TerminalChannel(out, show_conversation=True)
        async with runtime(
            store, config, config=cfg, channel=channel, processors=processors, with_metrics=True
        ) as rt:
            await publish_all(rt, folder)
            err.print(f"[dim]{rt.engine.worker_id} on {rt.store!r}[/dim]")
            if until_idle:
                await rt.worker.run_until_idle()
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if serve is None or rt.metrics is None:
                await rt.worker.run_forever(stop)
                return
            metrics = rt.metrics
            await metrics.refresh_store(rt.store, rt.engine.clock.now())
            host, port = _metrics_address(serve, cfg.metrics.listen_address())
            try:
                listener = Listener(host, port, metrics)
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
                ) from exc
            err.print(f"metrics at {listener.url}", markup=False, style="dim")

            async def gauges() -> None:
                while not stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), _STORE_GAUGES_SECONDS)
                    with contextlib.suppress(TrilhaError):
                        await metrics.refresh_store(rt.store, rt.engine.clock.now())

            refresher = asyncio.create_task(gauges())
            try:
                await rt.worker.run_forever(stop)
            finally:
                stop.set()
                await refresher
                listener.close()

    _run(main())


def _metrics_address(
    given: tuple[str | None, int | None], configured: tuple[str, int] | None
) -> tuple[str, int]:
    """``--host``/``--port`` where given, else ``[metrics] listen``'s, else 127.0.0.1:9464."""
    host, port = configured or ("127.0.0.1", 9464)
    return given[0] or host, port if given[1] is None else given[1]


# ------------------------------------------------------------------------------------ serve


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    flows: Annotated[
        Path | None,
        typer.Option("--flows", help="Folder of flows to publish (shared by every institution)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=0, max=64, help="Worker loops in this process (0: the API only)."
        ),
    ] = 1,
    log_level: LogLevelOpt = None,
) -> None:
    """Serve the HTTP API, with workers and the outbox dispatcher, in one process."""
    _serve(host, port, store, config, flows, workers, log_level, load_config(config))


def _serve(
    host: str,
    port: int,
    store: str | None,
    config: Path | None,
    flows: Path | None,
    workers: int,
    log_level: str | None,
    cfg: Config,
    announce: Callable[[str], None] | None = None,
) -> None:
    """What ``serve`` runs, with ``cfg`` (``demo``'s is built, not read); ``announce``
    gets the API's URL once the first-start key exists, to say more than serve does."""
    configure_logging(_with_level(cfg.logging, log_level) if log_level else cfg.logging)
    tracing.start(cfg.tracing)  # refuses a set endpoint without the otel extra
    try:
        _serving(host, port, store, config, flows, workers, cfg, announce)
    finally:
        tracing.shutdown()  # what is still queued goes to the collector


def _serving(
    host: str,
    port: int,
    store: str | None,
    config: Path | None,
    flows: Path | None,
    workers: int,
    cfg: Config,
    announce: Callable[[str], None] | None,
) -> None:
    import uvicorn

    from trilha.api.app import ServeOptions, create_app
    from trilha.api.connections import protocol

    _run(_bootstrap_key(store))
    options = ServeOptions(store, config, flows, workers)
    api = create_app(options, config=cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            api,
            host=host,
            port=port,
            log_config=None,  # trilha's own pipeline prints the process log
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(5, int(cfg.engine.lease_seconds)),
            # asyncio's loop, but out of file descriptors it fails one accept() a second
            # rather than thousands (see trilha.api.loop)
            loop="trilha.api.loop:SteadyLoop",
            # h11 with a deadline for a request's headers and a cap on open connections
            # (see trilha.api.connections); the body's deadline is the app's
            http=protocol(cfg.api.header_timeout_seconds, cfg.api.max_connections),
            timeout_keep_alive=cfg.api.keep_alive_seconds,
        )
    )
    err.print(f"[dim]trilha {trilha_version} serving on http://{host}:{port} (docs at /docs)[/dim]")
    if announce is not None:
        announce(f"http://{host}:{port}")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again
    # under the handlers it found: make those quiet so a clean stop exits 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if not server.started:
        raise typer.Exit(1)


#: the first-start key's file: next to a SQLite store, named after it
#: (``trilha.db.admin-key``), else in the working folder
KEY_FILE_SUFFIX = ".admin-key"
_KEY_FILE = "trilha" + KEY_FILE_SUFFIX


async def _bootstrap_key(store_url: str | None) -> None:
    """On a store with no API key at all, make one admin key, so a first ``trilha
    serve`` can be used at once (``trilha keys`` makes the others).

    The key acts on every institution, and a service's stderr usually ends in a log
    store that many people read: the key goes to a file only its owner can read, and
    stderr names the file. The key itself is printed only to a person at a terminal."""
    import shlex

    from trilha.api.auth import new_key
    from trilha.store.sqlite import SQLiteStore

    st = open_store(store_url)
    await st.open()
    try:
        if await st.list_api_keys():
            return
        key, plain = new_key("local", "admin", now=time.time(), name="bootstrap")
        where = (
            st.path.with_name(st.path.name + KEY_FILE_SUFFIX)
            if isinstance(st, SQLiteStore)
            else Path(_KEY_FILE)
        )
        path = _write_secret(where, plain)
        try:
            await st.create_api_key(key)
        except BaseException:  # a file must never hold a key the store does not know
            path.unlink(missing_ok=True)
            raise
    finally:
        await st.close()
    err.print(
        f"no API key existed: created admin key {key.key_id} (institution local;"
        " an admin key acts on every institution)",
        markup=False,
    )
    err.print(
        f"  the key is in {path}, readable by you only: KEY=$(cat {shlex.quote(str(path))})",
        markup=False,
    )
    if sys.stderr.isatty():  # a person, not a log store: show it once
        err.print("  the key (shown on this terminal only, once):", markup=False)
        err.print(plain, markup=False)


def _write_secret(path: Path, secret: str) -> Path:
    """Write ``secret`` to ``path`` (made absolute, returned) so that only its owner can
    ever read it: a new file created with mode 0600 (``O_EXCL``: never a file or a
    symbolic link that was there), written, then renamed onto ``path``. That replaces a
    key file left by an earlier store of the same name, whose keys this store does not
    have. A :class:`ConfigError` says what to do when the folder is not writable."""
    import secrets

    path = path.absolute()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                os.fchmod(file.fileno(), 0o600)  # a umask takes bits away: the owner reads
                file.write(secret + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(
            f"cannot write the first admin key to {path}: {exc.strerror or exc}"
            " (or create one first: trilha keys create --institution local --role admin)"
        ) from exc
    return path


# ------------------------------------------------------------------------------------- demo


@app.command()
def demo(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The API's port.")] = 8000,
    db: Annotated[Path, typer.Option("--db", help="The SQLite store's file.")] = Path("trilha.db"),
    flows: Annotated[
        Path, typer.Option("--flows", help="Folder of flows to publish, with its trilha.toml.")
    ] = Path("examples"),
    down: Annotated[
        list[str] | None,
        typer.Option(
            "--down",
            metavar="NAME",
            help="Start this stand-in down, answering 503, to see the flows' fallbacks"
            " (agenda or booking; repeatable).",
        ),
    ] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Serve the examples with stand-ins for the services they call: try trilha at once.

    Runs what `serve --flows examples` runs (the API, a worker, the debugger, on
    127.0.0.1) and beside it, on 127.0.0.1, a stand-in for each service the flows call
    that trilha ships one for: `agenda` (examples/scheduling.json) and `booking`
    (examples/clinic.json), declared as the dependencies of the folder's trilha.toml.
    POST /down and /up on a stand-in take it down and up while it runs. Run it from the
    repository's root (where examples/ is), or give --flows. Ctrl-C stops it all."""
    from trilha.demo.run import demo_config, start_demo

    if not flows.is_dir():
        raise ConfigError(
            f"--flows {flows}: no such folder; run trilha demo from the repository's root"
            " (where examples/ is), or give --flows DIR"
        )
    folder = load_folder(flows, Processors.from_entry_points())
    store = f"sqlite:///{db.absolute()}"
    with start_demo(folder, demo_config(flows), set(down or ())) as running:

        def announce(url: str) -> None:
            key_file = db.absolute().with_name(db.name + KEY_FILE_SUFFIX)
            lines = running.lines(url, key_file if key_file.exists() else None, flows)
            for line in lines:
                err.print(line, markup=False)

        _serve("127.0.0.1", port, store, None, flows, 1, log_level, running.config, announce)


# ------------------------------------------------------------------------------------- keys


keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    institution: Annotated[
        str, typer.Option("--institution", help="The institution the key acts for.")
    ],
    role: Annotated[
        str, typer.Option("--role", help="viewer (reads), operator (also changes), admin (all).")
    ] = "operator",
    name: Annotated[str | None, typer.Option("--name", help="A note: who or what uses it.")] = None,
    store: StoreOpt = None,
) -> None:
    """Create a key; it is printed once, alone on the last line, and never again."""
    import re

    from trilha.api.auth import ROLES, new_key
    from trilha.core.flow import FLOW_ID_PATTERN

    if role not in ROLES:
        raise ConfigError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    if not re.fullmatch(FLOW_ID_PATTERN, institution):
        raise ConfigError(f"--institution {institution!r}: letters, digits, '_', '.' and '-' only")

    async def main() -> tuple[str, str]:
        st = open_store(store)
        await st.open()
        try:
            key, plain = new_key(institution, role, now=time.time(), name=name)
            await st.create_api_key(key)
            return key.key_id, plain
        finally:
            await st.close()

    key_id, plain = _run(main())
    scope = "every institution" if role == "admin" else f"institution {institution}"
    err.print(f"key {key_id}: {role} for {field(scope)}. Keep it now: it is not shown again.")
    sys.stdout.write(plain + "\n")


@keys_app.command("list")
def keys_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every key (ids, tenants, roles; never the secrets)."""

    async def main() -> list[Any]:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            return await st.list_api_keys()
        finally:
            await st.close()

    keys = _run(main())
    rows = [
        {
            "keyId": k.key_id,
            "institutionId": k.institution_id,
            "role": k.role,
            "name": k.name,
            "createdAt": iso(k.created_at),
            "revokedAt": iso(k.revoked_at),
        }
        for k in keys
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(
        whole_column("key", (r["keyId"] for r in rows)),
        Column("institution", overflow="fold"),
        Column("role", overflow="fold"),
        Column("name", overflow="fold"),
        whole_column("created", (r["createdAt"] for r in rows)),
        whole_column("revoked", (r["revokedAt"] for r in rows)),
    )
    for r in rows:
        table.add_row(*(field(str(r[k] or "-")) for k in r))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (trk_<id>_...).")],
    store: StoreOpt = None,
) -> None:
    """Revoke a key: requests with it get 401 within seconds."""

    async def main() -> bool:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            return await st.revoke_api_key(key_id, now=time.time())
        finally:
            await st.close()

    if not _run(main()):
        raise ConfigError(f"no active key {key_id!r}")
    err.print(f"key {field(key_id)} revoked")


# ------------------------------------------------------------------------------------- show


@app.command()
def show(
    execution_id: Annotated[str | None, typer.Argument(help="The execution's id.")] = None,
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", help="Show this conversation's latest execution."),
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an execution: status, current node, variables, transcript and state history."""
    if (execution_id is None) == (conversation is None):
        raise ConfigError("give either EXECUTION_ID or --conversation ID")

    async def main() -> dict[str, Any]:
        async with runtime(store, None, channel=MemoryChannel(), must_exist=True) as rt:
            if execution_id is not None:
                ex = await rt.store.get_execution(execution_id)
            else:
                assert conversation is not None
                ex = await rt.store.latest_execution(None, conversation)
            return await execution_view(rt.store, ex, now=rt.engine.clock.now())

    data = _run(main())
    if as_json:
        sys.stdout.write(json_text(data) + "\n")
        return
    _print_execution(data)


def _print_execution(data: dict[str, Any]) -> None:
    outcome = f" ({data['outcome']})" if data["outcome"] else ""
    out.print(f"[bold]execution[/bold] {data['executionId']}")
    out.print(f"  flow         {field(data['flowId'])} v{data['flowVersion']}")
    out.print(f"  status       [bold]{data['status']}[/bold]{outcome}")
    out.print(f"  node         {field(str(data['currentNodeId']))}")
    if data["pausedFrom"]:
        due = f"; its wait is due at {data['dueAt']}" if data["dueAt"] else ""
        out.print(f"  paused from  {data['pausedFrom']}{due}")
    elif data["waitingFor"]:
        out.print(f"  waiting for  {field(data['waitingFor'])} until {data['dueAt']}")
    out.print(
        f"  conversation {field(data['conversationId'])} · contact {field(data['contactId'])}"
        f" · institution {field(data['institutionId'])}"
    )
    if data["error"]:
        out.print(f"  error        [red]{field(str(data['error'].get('message')))}[/red]")
    out.print("[bold]variables[/bold]")
    out.print(json_text(data["variables"], indent=2), markup=False)
    from trilha.transcript import contact_note

    out.print("[bold]transcript[/bold]")
    for line in data["transcript"]:
        who = {
            "bot": "[cyan]bot>[/cyan]",
            "agent": f"[magenta]agent {field(str(line.get('agentId')))}>[/magenta]",
        }.get(line["from"], "[green]contact>[/green]")
        # a bot's text already numbers its options and spells its link out; a contact's
        # tap, photo or place says its id, file or map link beside its text
        note = contact_note(line.get("content")) if line["from"] == "contact" else None
        extra = f" [dim]{field(note)}[/dim]" if note else ""
        out.print(f"  {who} {field(line['text'])}{extra}")
    at = whole_column("at", (h["at"] for h in data["history"]))
    # the other columns give way to the times: what does not fit folds onto the next line
    rest = [Column(name, overflow="fold") for name in ("from", "to", "reason", "by")]
    table = Table(at, *rest, title="state history", title_justify="left")
    for h in data["history"]:
        table.add_row(h["at"], h["from"] or "-", h["to"], field(h["reason"]), field(h["actor"]))
    out.print(table)


# ------------------------------------------------------------------------------------- logs

#: how often ``logs --follow`` re-reads the store
_FOLLOW_POLL_SECONDS = 0.5


@app.command()
def logs(
    execution_id: Annotated[str, typer.Argument(help="The execution's id.")],
    store: StoreOpt = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until the execution has ended."
        ),
    ] = False,
    level: Annotated[
        str,
        typer.Option("--level", help="Minimum level: DEBUG, INFO, WARN, ERROR or CRITICAL."),
    ] = "DEBUG",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON lines: one object per trail line (timestamp, level, executionId,"
            " nodeId, nodeType, message, context), as the API's logs route answers them.",
        ),
    ] = False,
) -> None:
    """Print an execution's stored log trail, oldest first; --follow waits for new lines."""
    from trilha.errors import CorruptedRecord
    from trilha.observability import trail

    minimum = trail.parse_level(level)

    def emit(line: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(json_text(line, default=str) + "\n")
            sys.stdout.flush()
        else:
            out.print(trail.render(line))

    async def main() -> None:
        async with runtime(store, None, channel=MemoryChannel(), must_exist=True) as rt:
            printed = 0  # records already handled (printed or filtered out)
            ended = False
            while True:
                # the row first, then the trail: once the row reads terminal, the trail
                # read after it holds every line of the execution (steps commit atomically)
                try:
                    ex: Execution | None = await rt.store.get_execution(execution_id)
                except CorruptedRecord:  # the trail still tells whose it is
                    ex = None
                records = await rt.store.logs(execution_id)
                if ex is None and not records and printed == 0:
                    raise CorruptedRecord(f"execution {execution_id} cannot be read")
                identity = (
                    trail.Identity.of(ex)
                    if ex is not None
                    else trail.Identity.from_records(records)
                )
                # the trail is append-only and ordered by id: the records not yet
                # handled are those past the count already handled (no store method needed)
                fresh = records[printed:]
                printed = len(records)
                for line in trail.lines(fresh, identity, minimum=minimum):
                    emit(line)
                if not follow or (ended and not fresh):
                    return
                ended = ex is not None and ex.status.terminal
                await asyncio.sleep(_FOLLOW_POLL_SECONDS)

    try:
        _run(main())
    except KeyboardInterrupt:  # Ctrl-C ends --follow; what was printed stands
        raise typer.Exit(0) from None


# ------------------------------------------------------------------------------------ stats


@app.command()
def stats(
    since: Annotated[
        str,
        typer.Option("--since", help="Window: a span back (90s, 30m, 1h, 2d) or an ISO time."),
    ] = "1h",
    institution: Annotated[
        str | None, typer.Option("--institution", help="Only this institution's executions.")
    ] = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many slowest nodes.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Aggregates from the store: success by node type, turn times by flow, errors by
    institution and the slowest nodes. Only reads the store."""
    import time

    from trilha.observability import stats as view
    from trilha.store import open_store
    from trilha.store.base import StoreStats

    start = view.parse_since(since, time.time())

    async def main() -> StoreStats:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            return await st.stats(start, institution_id=institution, limit=limit)
        finally:
            await st.close()

    result = _run(main())
    if as_json:
        data = view.stats_json(result, institution_id=institution)
        sys.stdout.write(json_text(data) + "\n")
        return
    out.print(field(view.heading(result, institution_id=institution)))
    for table in view.tables(result):
        out.print(table)


# ------------------------------------------------------------------------------------ check

#: ``trilha check`` exits with this when an execution breaks an invariant (warnings alone: 0)
CHECK_VIOLATIONS_EXIT = 3


@app.command()
def check(
    store: StoreOpt = None,
    institution: Annotated[
        str | None, typer.Option("--institution", help="Only this institution's executions.")
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds past its due time before work nobody holds is reported as overdue.",
        ),
    ] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Check every execution in the store against what trilha promises of it (its state,
    its state history, its checkpoints, its outbox, the contact's messages and its
    signals agree with one another, and nothing is left overdue): print each
    violation with the execution's id, the rule and what is wrong. Exit 3 if any was found. Only
    reads the store."""
    import time

    from trilha.core.invariants import Violation
    from trilha.observability.checker import CheckReport, check_store
    from trilha.store import open_store

    def show(v: Violation) -> None:
        style = "red" if v.severity == "error" else "yellow"
        out.print(
            f"[{style}]{v.severity:7}[/{style}] {v.execution_id}  [bold]{v.rule}[/bold]:"
            f" {field(v.detail)}",
            soft_wrap=True,
        )

    async def main() -> CheckReport:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            return await check_store(
                st,
                now=time.time(),
                grace=grace,
                institution_id=institution,
                found=None if as_json else show,
            )
        finally:
            await st.close()

    report = _run(main())
    if as_json:
        data = {
            "checked": report.checked,
            "errors": report.errors,
            "warnings": report.warnings,
            "violations": [v.wire() for v in report.violations],
        }
        sys.stdout.write(json_text(data) + "\n")
    else:
        out.print(
            f"checked {report.checked} executions: {report.errors} errors"
            f" ({report.broken_executions} executions), {report.warnings} warnings"
        )
    if report.errors:
        raise typer.Exit(CHECK_VIOLATIONS_EXIT)


# ----------------------------------------------------------------------------------- alerts

#: ``trilha alerts`` exits with this when an alert is firing (1 is an error, 2 bad usage)
ALERTS_FIRING_EXIT = 3


@app.command()
def alerts(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate", help="Evaluate the rules now (and notify) before printing."),
    ] = False,
    history: Annotated[
        bool, typer.Option("--history", help="Also show the latest state changes.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="How many changes --history shows.")
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show every alert rule's state (inactive, pending, firing, resolved) from the store.
    Exits 3 when an alert is firing, so scripts can tell."""

    from trilha.core.alerts import AlertState, AlertStatus
    from trilha.engine.clock import SystemClock
    from trilha.observability import alerts as view
    from trilha.store import open_store

    cfg = load_config(config)
    clock = SystemClock()

    async def main() -> tuple[list[AlertState], list[AlertState]]:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            evaluated: list[AlertState] = []
            if evaluate:
                evaluator = view.AlertEvaluator(st, cfg, clock)
                try:
                    evaluated = await evaluator.evaluate()
                finally:  # a one-shot command waits for its webhook's retries
                    await evaluator.aclose(grace_seconds=None)
            stored = await st.alerts()
            keys = {(s.rule, s.instance) for s in stored}
            stored += [s for s in evaluated if (s.rule, s.instance) not in keys]
            shown = view.shown_states(stored, cfg.alerts.active_rules(), clock.now())
            changes = await st.alert_history(limit=limit) if history else []
            return shown, changes
        finally:
            await st.close()

    shown, changes = _run(main())
    firing = any(s.status is AlertStatus.FIRING for s in shown)
    if as_json:
        data: dict[str, Any] = {"alerts": [view.alert_json(s) for s in shown]}
        if history:
            data["history"] = [
                {k: v for k, v in view.alert_json(c).items() if k in _CHANGE_KEYS} for c in changes
            ]
        sys.stdout.write(json_text(data) + "\n")
        raise typer.Exit(ALERTS_FIRING_EXIT if firing else 0)
    now = clock.now()
    table = Table("instance", "state", "severity", "value", "threshold", "since")
    table.columns.insert(0, Column("rule", no_wrap=True))
    for s in shown:
        since = {
            AlertStatus.PENDING: s.active_at,
            AlertStatus.FIRING: s.fired_at,
            AlertStatus.RESOLVED: s.resolved_at,
        }.get(s.status)
        table.add_row(
            s.rule,
            field(s.instance) or "-",
            _ALERT_STYLES.get((s.status.value, s.severity), "{}").format(s.status.value),
            s.severity,
            view.format_value(s.rule, s.value),
            view.format_value(s.rule, s.threshold),
            view.format_age(now - since) if since is not None else "-",
        )
    out.print(table)
    if history:
        at = whole_column("at", (iso(c.updated_at) for c in changes))
        changes_table = Table(
            at, "rule", "instance", "state", "value", title="changes", title_justify="left"
        )
        for c in changes:
            changes_table.add_row(
                iso(c.updated_at) or "-",
                c.rule,
                field(c.instance) or "-",
                c.status.value,
                view.format_value(c.rule, c.value),
            )
        out.print(changes_table)
    raise typer.Exit(ALERTS_FIRING_EXIT if firing else 0)


_ALERT_STYLES = {
    ("firing", "critical"): "[bold red]{}[/bold red]",
    ("firing", "warning"): "[bold yellow]{}[/bold yellow]",
    ("pending", "critical"): "[yellow]{}[/yellow]",
    ("pending", "warning"): "[yellow]{}[/yellow]",
    ("resolved", "critical"): "[green]{}[/green]",
    ("resolved", "warning"): "[green]{}[/green]",
    ("inactive", "critical"): "[dim]{}[/dim]",
    ("inactive", "warning"): "[dim]{}[/dim]",
}
#: what a history line carries: the change, not the alert's other times
_CHANGE_KEYS = ("status", "rule", "instance", "severity", "value", "summary", "updatedAt")


# ------------------------------------------------------------------------------------- send


@app.command()
def send(
    execution_id: Annotated[str, typer.Argument(help="The execution waiting for the reply.")],
    text: Annotated[
        str | None,
        typer.Argument(
            help="The contact's reply; for button and list, the title tapped (optional"
            " for every type but text)."
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    message_id: Annotated[
        str | None, typer.Option("--message-id", help="Deduplication id (default: new).")
    ] = None,
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Only store the message; a worker applies it.")
    ] = False,
    kind: Annotated[
        str, typer.Option("--type", help="text, button, list, media or location.")
    ] = "text",
    reply_id: Annotated[
        str | None, typer.Option("--reply-id", help="button/list: the id of the one tapped.")
    ] = None,
    media_kind: Annotated[
        str | None,
        typer.Option("--media-kind", help="media: image, video, audio, document or sticker."),
    ] = None,
    media_url: Annotated[
        str | None, typer.Option("--media-url", help="media: the file's http(s) URL.")
    ] = None,
    mime_type: Annotated[
        str | None, typer.Option("--mime-type", help="media: its type, e.g. image/jpeg.")
    ] = None,
    caption: Annotated[str | None, typer.Option("--caption", help="media: its caption.")] = None,
    filename: Annotated[
        str | None, typer.Option("--filename", help="media: a document's file name.")
    ] = None,
    latitude: Annotated[
        float | None, typer.Option("--latitude", help="location: -90 to 90.")
    ] = None,
    longitude: Annotated[
        float | None, typer.Option("--longitude", help="location: -180 to 180.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="location: the place's name.")] = None,
    address: Annotated[str | None, typer.Option("--address", help="location: its address.")] = None,
    language: Annotated[
        str | None,
        typer.Option("--language", help="The contact's language, a BCP 47 tag (pt-BR, en)."),
    ] = None,
) -> None:
    """Deliver a contact's reply to a stored execution, then run it until it waits again.

    A text by default; --type button/list (with --reply-id), media (--media-kind,
    --media-url...) or location (--latitude, --longitude...) send what a platform would."""
    media = {"kind": media_kind, "url": media_url, "mimeType": mime_type}
    media |= {"caption": caption, "filename": filename}
    place = {"latitude": latitude, "longitude": longitude, "name": name, "address": address}
    reply = _inbound_from_flags(
        {
            "type": kind,
            "text": text,
            "replyId": reply_id,
            "media": _given(media),
            "location": _given(place),
            "language": language,
        }
    )

    async def main() -> Execution:
        async with runtime(store, config, channel=TerminalChannel(out), must_exist=True) as rt:
            result = await rt.engine.send(
                execution_id, reply.plain_text(), message_id=message_id, content=reply.content()
            )
            if result.status == "duplicate":
                err.print(
                    "[yellow]duplicate message id"
                    f" {field(result.message.message_id)}: ignored[/yellow]"
                )
            if not no_run:
                await rt.worker.run_until_idle(execution_id)
            return await rt.store.get_execution(execution_id)

    _print_status_line(_run(main()))


# ----------------------------------------------------------------------------------- signal


@app.command("signal")
def signal_command(
    execution_id: Annotated[str, typer.Argument(help="The execution the signal is for.")],
    event: Annotated[
        str,
        typer.Argument(help="The event, as its wait_event node names it (payment.confirmed)."),
    ],
    payload: Annotated[
        str | None,
        typer.Option("--payload", help="The payload, as JSON ('{\"amount\": 10}'; default null)."),
    ] = None,
    signal_id: Annotated[
        str | None,
        typer.Option(
            "--signal-id", help="The signal's id: a repeat is applied once (default: new)."
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Only store the signal; a worker applies it.")
    ] = False,
) -> None:
    """Send a signal (an event from outside: a payment confirmed) to an execution, then
    run it until it waits again. A signal for a wait_event node it has not reached yet is
    kept until it gets there."""
    value = _payload_from_flag(payload)

    async def main() -> Execution:
        async with runtime(store, config, channel=TerminalChannel(out), must_exist=True) as rt:
            result = await send_signal(
                rt.engine, execution_id, event, payload=value, signal_id=signal_id
            )
            sent = result.signal
            if result.status == "duplicate":
                taken = "applied" if sent.consumed_at is not None else "kept, not applied yet"
                err.print(
                    f"[yellow]duplicate signal id {field(sent.signal_id)}: received"
                    f" {iso(sent.received_at)} ({taken}); ignored[/yellow]"
                )
            else:
                err.print(f"[dim]signal {field(sent.signal_id)} ({field(sent.event)}) stored[/dim]")
            if not no_run:
                await rt.worker.run_until_idle(execution_id)
            return await rt.store.get_execution(execution_id)

    _print_status_line(_run(main()))


def _payload_from_flag(text: str | None) -> Any:
    """``--payload``'s JSON (``None`` when not given); bad JSON names the flag."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--payload: not valid JSON ({exc})") from None


#: the flag (or argument) that gave each field of a reply, to name it in an error
_SEND_FLAGS = {
    "type": "--type",
    "text": "TEXT",
    "replyId": "--reply-id",
    "media": "--media-kind/--media-url",
    "media.kind": "--media-kind",
    "media.url": "--media-url",
    "media.mimeType": "--mime-type",
    "media.caption": "--caption",
    "media.filename": "--filename",
    "location": "--latitude/--longitude",
    "location.latitude": "--latitude",
    "location.longitude": "--longitude",
    "location.name": "--name",
    "location.address": "--address",
    "language": "--language",
}


def _given(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The flags of a group that were given, ``None`` when none was."""
    return {k: v for k, v in fields.items() if v is not None} or None


def _inbound_from_flags(fields: dict[str, Any]) -> InboundContent:
    """The reply ``trilha send`` was given, checked as the API checks a message body;
    a bad one names the flag: ``--reply-id: required when type is 'button'``."""
    try:
        return InboundContent.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_SEND_FLAGS.get(where, where)}: {message}")
        raise ConfigError("; ".join(problems)) from None


# ----------------------------------------------------------------------------------- outbox

#: ``trilha outbox --redrive ID`` exits with this when there is no such message (or it was
#: delivered already: nothing to send again)
OUTBOX_REFUSED_EXIT = 2
#: how many messages ``trilha outbox`` reads per page (``--redrive-all`` pages through all)
OUTBOX_PAGE = 500


@app.command()
def outbox(
    status: Annotated[
        str,
        typer.Option(
            "--status", help="dead (every attempt failed) or pending (waiting for an attempt)."
        ),
    ] = "dead",
    institution: Annotated[
        str | None, typer.Option("--institution", help="Only this institution's messages.")
    ] = None,
    redrive: Annotated[
        int | None,
        typer.Option("--redrive", min=1, help="Send this message (its id) again, now."),
    ] = None,
    redrive_all: Annotated[
        bool,
        typer.Option("--redrive-all", help="Send every listed message (--status) again, now."),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=OUTBOX_PAGE, help="How many to list.")
    ] = 50,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the messages the dispatcher gave up on (dead) or that wait for another attempt
    (pending), oldest first; or send them again: a redriven message is due now with its
    attempts reset (a running worker sends it) and its trail says who redrove it."""
    import re

    from trilha.core.flow import FLOW_ID_PATTERN
    from trilha.outbox import MAX_ID, item_view
    from trilha.store.base import OutboxItem, OutboxStatus, Redrive

    if status not in ("dead", "pending"):
        raise ConfigError(f"--status {status!r}: expected dead or pending")
    if redrive is not None and redrive_all:
        raise ConfigError("--redrive and --redrive-all: give one of them")
    if redrive is not None and redrive > MAX_ID:
        raise ConfigError(f"--redrive {redrive}: no message has an id that large")
    if institution is not None and not re.fullmatch(FLOW_ID_PATTERN, institution):
        raise ConfigError(f"--institution {institution!r}: letters, digits, '_', '.' and '-' only")
    who = _actor(actor)
    wanted: OutboxStatus = "dead" if status == "dead" else "pending"

    async def main() -> tuple[list[OutboxItem], list[Redrive]]:
        st = open_store(store, must_exist=True)
        await st.open()
        try:
            if redrive is not None:
                done = await st.redrive_outbox(
                    redrive, institution_id=institution, now=time.time(), actor=who
                )
                return [], [done]
            if not redrive_all:
                return await st.list_outbox(wanted, institution_id=institution, limit=limit), []
            results: list[Redrive] = []
            after: int | None = None
            while page := await st.list_outbox(
                wanted, institution_id=institution, after=after, limit=OUTBOX_PAGE
            ):
                for item in page:
                    results.append(
                        await st.redrive_outbox(
                            item.id, institution_id=institution, now=time.time(), actor=who
                        )
                    )
                after = page[-1].id
            return [], results
        finally:
            await st.close()

    listed, redriven = _run(main())
    if redrive is not None:
        (done,) = redriven
        if done.outcome != "redriven" or done.item is None:
            why = "was delivered already" if done.outcome == "sent" else "is not in the outbox"
            if as_json:
                sys.stdout.write(json_text({"redriven": [], "refused": {redrive: why}}) + "\n")
            err.print(f"[red]message {redrive} {why}: nothing to send again[/red]")
            raise typer.Exit(OUTBOX_REFUSED_EXIT)
    if redrive is not None or redrive_all:
        items = [r.item for r in redriven if r.outcome == "redriven" and r.item is not None]
        if as_json:
            sys.stdout.write(json_text({"redriven": [item_view(i) for i in items]}) + "\n")
            return
        for item in items:
            out.print(f"redriven {item.id} ({field(item.execution_id)}): due now")
        out.print(f"{len(items)} message(s) redriven by {field(who)}; a running worker sends them")
        return
    if as_json:
        sys.stdout.write(json_text({"messages": [item_view(i) for i in listed]}) + "\n")
        return
    views = [item_view(item) for item in listed]
    when = [(v["nextAttemptAt"] if wanted == "pending" else v["createdAt"]) for v in views]
    table = Table(
        "id",
        "institution",
        "execution",
        "contact",
        "attempts",
        "last error",
        "text",
        whole_column("next try" if wanted == "pending" else "queued", when),
    )
    for item, view, at in zip(listed, views, when, strict=True):
        table.add_row(
            str(item.id),
            field(item.institution_id),
            field(item.execution_id),
            field(view["contactMasked"]),
            str(item.attempts),
            field(view["lastError"] or "-"),
            field(_shortened(item.text)),
            at or "-",
        )
    out.print(table)
    if not listed:
        err.print(f"no {wanted} messages")


def _shortened(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------- operate

IdArg = Annotated[str, typer.Argument(help="The execution's id.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why; kept in the state history.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who does it (default: cli:$USER).")]
#: the executions listing's filters, as the commands acting on many executions take them
StatusFilterOpt = Annotated[str | None, typer.Option("--status", help="Only this state.")]
ConversationFilterOpt = Annotated[
    str | None, typer.Option("--conversation", help="Only this conversation's.")
]
ContactFilterOpt = Annotated[str | None, typer.Option("--contact", help="Only this contact's.")]


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in this environment
        return "cli"


def _operate(
    store: str | None,
    call: Callable[[Operator], Awaitable[Execution]],
    *,
    run: bool = False,
    config: Path | None = None,
) -> None:
    """Run one operator operation and print the execution's resulting status line; with
    ``run``, then run the execution until it waits again (as ``send`` does)."""

    async def main() -> Execution:
        channel = TerminalChannel(out) if run else MemoryChannel()
        async with runtime(store, config, channel=channel, must_exist=True) as rt:
            execution = await call(rt.operator)
            if run and not execution.status.terminal:
                await rt.worker.run_until_idle(execution.id)
                execution = await rt.store.get_execution(execution.id)
            return execution

    _print_status_line(_run(main()), out)


NoRunOpt = Annotated[
    bool, typer.Option("--no-run", help="Only change the state; a worker runs it later.")
]


def _simple_operation(name: str, method: Callable[..., Awaitable[Execution]], summary: str) -> None:
    """Register ``trilha NAME EXECUTION_ID [--reason] [--actor] [--store]``."""

    def command(
        execution_id: IdArg,
        reason: ReasonOpt = None,
        actor: ActorOpt = None,
        store: StoreOpt = None,
    ) -> None:
        _operate(store, lambda op: method(op, execution_id, actor=_actor(actor), reason=reason))

    command.__doc__ = summary
    app.command(name)(command)


_simple_operation(
    "pause",
    Operator.pause,
    "Pause an active execution: no progress; its timers and the replies are kept.",
)


@app.command()
def resume(
    execution_id: IdArg,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    no_run: NoRunOpt = False,
) -> None:
    """Resume a paused execution where it was, then run it until it waits again: replies
    that arrived are applied."""
    _operate(
        store,
        lambda op: op.resume(execution_id, actor=_actor(actor), reason=reason),
        run=not no_run,
        config=config,
    )


_simple_operation("cancel", Operator.cancel, "Cancel an active execution (outcome cancelled).")


@app.command()
def advance(
    execution_id: IdArg,
    to: Annotated[
        str | None,
        typer.Option("--to", help="The node to move to (default: the current node's next)."),
    ] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    no_run: NoRunOpt = False,
) -> None:
    """Move an active execution to a node (or its current node's next), then run it until
    it waits again."""
    _operate(
        store,
        lambda op: op.advance(execution_id, to, actor=_actor(actor), reason=reason),
        run=not no_run,
        config=config,
    )


@app.command()
def handback(
    target: Annotated[
        str,
        typer.Argument(
            help="The execution's id, or a conversation's id (its latest execution).",
            metavar="EXECUTION_OR_CONVERSATION",
        ),
    ],
    node: Annotated[
        str | None,
        typer.Option("--node", help="The node to hand back to (default: the handoff's next)."),
    ] = None,
    institution: Annotated[
        str | None,
        typer.Option("--institution", help="The conversation's institution (with several)."),
    ] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    no_run: NoRunOpt = False,
) -> None:
    """Give a conversation a person holds back to the bot (a 'wait' handoff), then run it
    until it waits again."""

    async def call(op: Operator) -> Execution:
        try:
            found = await op.store.get_execution(target)
        except ExecutionNotFound:
            found = await op.store.latest_execution(institution, target)
        return await op.handback(found.id, node, actor=_actor(actor), reason=reason)

    _operate(store, call, run=not no_run, config=config)


@app.command("migrate-executions")
def migrate_executions(
    flow_id: Annotated[str, typer.Argument(help="The flow, by its name.", metavar="FLOW_ID")],
    from_version: Annotated[int, typer.Option("--from", min=1, help="The version they run.")],
    to_version: Annotated[int, typer.Option("--to", min=1, help="The version to move to.")],
    node_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="old=new: a renamed node's counterpart (repeatable)."),
    ] = None,
    status: StatusFilterOpt = None,
    conversation: ConversationFilterOpt = None,
    contact: ContactFilterOpt = None,
    institution: Annotated[
        str | None,
        typer.Option("--institution", help="Only this institution's executions (and flows)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count and check; move nothing.")
    ] = False,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move a flow's waiting executions to another of its versions, with a progress bar.

    As POST /v1/flows/{flowId}/migrations does, on the store directly; --dry-run only
    counts and checks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from trilha.api.routes.flows import resolve
    from trilha.engine.moving import Migration, Mover
    from trilha.store.base import ExecutionFilter

    mapping = _parse_node_map(node_map or [])
    if status is not None and status not in {s.value for s in ExecutionStatus}:
        raise ConfigError(f"--status {status!r}: not a state")
    if from_version == to_version:
        raise ConfigError("--to must differ from --from")

    async def main(bar: Progress) -> Migration:
        async with runtime(store, config, channel=MemoryChannel(), must_exist=True) as rt:
            latest = await resolve(rt.store, institution, flow_id)
            if latest is None:
                raise ConfigError(f"no flow '{flow_id}'")
            old = await rt.engine.flow(latest.flow_id, from_version)
            new = await rt.engine.flow(latest.flow_id, to_version)
            for old_id, new_id in mapping.items():
                if old.node(old_id) is None or new.node(new_id) is None:
                    raise ConfigError(
                        f"--map {old_id}={new_id}: v{from_version} has no node '{old_id}'"
                        if old.node(old_id) is None
                        else f"--map {old_id}={new_id}: v{to_version} has no node '{new_id}'"
                    )
            where = ExecutionFilter(
                institution_id=institution,
                status=status,
                conversation_id=conversation,
                contact_id=contact,
            )
            mover = Mover(rt.store, rt.engine)
            counting = bar.add_task("counting", total=None)
            plan = await mover.run_all(
                old,
                new,
                mapping,
                where,
                dry_run=True,
                actor=_actor(actor),
                progress=lambda seen, _: bar.update(counting, completed=seen),
            )
            bar.update(counting, total=plan.total, completed=plan.total)
            if dry_run:
                return plan
            moving = bar.add_task("moving", total=plan.total)
            return await mover.run_all(
                old,
                new,
                mapping,
                where,
                dry_run=False,
                actor=_actor(actor),
                reason=reason,
                progress=lambda seen, _: bar.update(moving, completed=seen),
            )

    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=as_json,
    ) as bar:
        result = _run(main(bar))
    data = {"flowId": flow_id, **result.wire()}
    if as_json:
        out.print_json(data=data, ensure_ascii=True)
        return
    for node in data["nodes"]:
        missing = ", ".join(node["missingVariables"]) or "-"
        out.print(
            f"{field(node['nodeId'])}  {node['count']}  -> {field(node['counterpart'] or '(none)')}"
            f"  missing: {field(missing)}"
        )
    for skipped in data["skipped"]:
        out.print(f"skipped {skipped['executionId']}: {field(skipped['reason'])}")
    done = "would move" if dry_run else "moved"
    count = data["movable"] if dry_run else data["moved"]
    err.print(
        f"{count} of {data['total']} execution(s) {done} from v{from_version} to"
        f" v{to_version}; {data['skippedTotal']} skipped"
    )


def _parse_node_map(pairs: list[str]) -> dict[str, str]:
    """``--map old=new`` flags as a node map (at most :data:`MAX_NODE_MAP`)."""
    from trilha.core.moving import MAX_NODE_MAP

    if len(pairs) > MAX_NODE_MAP:
        raise ConfigError(f"--map: at most {MAX_NODE_MAP} entries, not {len(pairs)}")
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ConfigError(f"--map {pair!r}: expected old=new")
        mapping[old] = new
    return mapping


@app.command()
def bulk(
    action: Annotated[
        str, typer.Argument(help="cancel, pause, resume or retry.", metavar="ACTION")
    ],
    status: StatusFilterOpt = None,
    flow: Annotated[
        str | None, typer.Option("--flow", help="Only this flow (its name or stored id).")
    ] = None,
    conversation: ConversationFilterOpt = None,
    contact: ContactFilterOpt = None,
    with_errors: Annotated[
        bool, typer.Option("--with-errors", help="Only those with an error or a failed step.")
    ] = False,
    stuck: Annotated[
        bool, typer.Option("--stuck", help="Only those nothing is moving on.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count them; change nothing.")
    ] = False,
    institution: Annotated[str, typer.Option("--institution", help="Whose executions.")] = "local",
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause, resume, cancel or retry every execution of an institution the filters match,
    with a progress bar; each is audited as one done by hand, and those the action does
    not apply to are skipped with the reason. Interrupted, the job is left for a running
    `trilha serve` to finish."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from trilha.api.execution_filters import ExecutionFilterBody, filter_of
    from trilha.engine.bulk import ACTIONS, BulkRunner, job_view

    if action not in ACTIONS:
        raise typer.BadParameter(f"must be one of {', '.join(ACTIONS)}", param_hint="ACTION")
    try:
        given = ExecutionFilterBody(
            status=status,
            flow_id=flow,
            conversation_id=conversation,
            contact_id=contact,
            with_errors=with_errors,
            stuck=stuck,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = {"flowId": "flow", "conversationId": "conversation", "contactId": "contact"}
        where = str(problem["loc"][0]) if problem["loc"] else "filter"
        raise typer.BadParameter(problem["msg"], param_hint=f"--{name.get(where, where)}") from None

    async def main() -> dict[str, Any]:
        async with runtime(store, config, channel=MemoryChannel(), must_exist=True) as rt:
            runner = BulkRunner.from_config(rt.store, rt.operator, rt.config)
            selection = await filter_of(
                given,
                store=rt.store,
                institution=institution,
                now=rt.engine.clock.now(),
                stuck_grace=rt.worker.sweeper.grace_seconds,
            )
            if dry_run:
                return {"dryRun": True, "action": action, "total": await runner.count(selection)}
            job = await runner.start(
                institution_id=institution,
                actor=_actor(actor),
                action=action,  # narrowed by the check against ACTIONS above
                given=given.model_dump(by_alias=True, exclude_defaults=True),
                selection=selection,
                reason=reason,
            )
            with Progress(
                TextColumn(f"{action:<8}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                disable=as_json,
            ) as bar:
                task = bar.add_task(action, total=job.total)
                final = await runner.run(job.id, lambda j: bar.update(task, completed=j.done))
                while final is None or final.status == "running":  # a server took it over
                    await asyncio.sleep(0.5)
                    final = await rt.store.get_bulk_job(job.id)
                    if final is not None:
                        bar.update(task, completed=final.done)
            return job_view(final)

    result = _run(main())
    if as_json:
        out.print_json(data=result, ensure_ascii=True)
        return
    if result["dryRun"]:
        done = {"cancel": "cancelled", "pause": "paused", "resume": "resumed", "retry": "retried"}
        out.print(
            f"{result['total']} executions would be {done[action]} (dry run: nothing changed)"
        )
        return
    out.print(
        f"{action}: {result['succeeded']} done, {result['skipped']} skipped, {result['failed']}"
        f" failed of {result['total']} (job {result['jobId']}, {result['status']})"
    )
    for kind, notes in (("skipped", result["skips"]), ("failed", result["errors"])):
        for shown in notes:
            out.print(f"  {kind} {field(str(shown['executionId']))}: {field(shown['reason'])}")


@app.command()
def sweep(
    store: StoreOpt = None,
    grace_seconds: Annotated[
        float,
        typer.Option("--grace-seconds", min=0, help="How long past its due time a wait may sit."),
    ] = 30.0,
) -> None:
    """Reschedule executions nothing would move on (lost wake times, waits past due)."""

    async def main() -> list[tuple[str, str, str]]:
        async with runtime(store, None, channel=MemoryChannel(), must_exist=True) as rt:
            sweeper = Sweeper(rt.store, rt.engine.clock, grace_seconds=grace_seconds)
            return [(s.execution_id, s.status, s.reason) for s in await sweeper.sweep()]

    moved = _run(main())
    for execution_id, status, reason in moved:
        out.print(f"{execution_id}  {status}  {field(reason)}: rescheduled")
    err.print(f"[dim]{len(moved)} stuck execution{'s' * (len(moved) != 1)} moved on[/dim]")


@app.command()
def forget(
    contact: Annotated[
        str | None, typer.Option("--contact", help="The contact's id (WhatsApp: its wa_id).")
    ] = None,
    institution: Annotated[
        str | None, typer.Option("--institution", help="The institution to erase it in.")
    ] = None,
    retention: Annotated[
        bool,
        typer.Option(
            "--retention", help="Instead: erase what \\[retention] says is past its days."
        ),
    ] = False,
    actor: ActorOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a contact (LGPD): cancel its executions, delete its data from the store and
    the log file, and print the receipt. Or, with --retention, apply \\[retention] once."""
    from trilha.engine.erasure import Eraser  # the command's own: not every run needs it

    if retention == (contact is not None):
        raise typer.BadParameter("give --contact (with --institution) or --retention")
    if contact is not None and not institution:
        raise typer.BadParameter("--institution is required with --contact")

    async def main() -> dict[str, Any]:
        async with runtime(store, config, channel=MemoryChannel(), must_exist=True) as rt:
            eraser = Eraser(rt.store, rt.operator, rt.config, rt.engine.clock)
            if contact is not None and institution:
                receipt = await eraser.forget_contact(institution, contact, actor=_actor(actor))
                return receipt.wire()
            ran = await eraser.apply_retention(actor=_actor(actor))
            if ran is None:
                raise ConfigError("retention is off: set [retention] days (or per institution)")
            return {"erasures": ran[0], "removed": ran[1]}

    answer = _run(main())
    if as_json:
        out.print_json(data=answer)
        return
    removed = {k: v for k, v in answer["removed"].items() if v}
    if contact is not None:
        out.print(
            f"erased contact {field(contact)} of {field(answer['institutionId'])}"
            f" (erasure {answer['erasureId']}, {answer['cancelled']} cancelled)"
        )
    else:
        out.print(f"retention: {answer['erasures']} erasure(s)")
    for kind, count in removed.items():
        out.print(f"  {kind:<18} {count}")
    if not removed:
        out.print("  nothing stored")


# ------------------------------------------------------------------------------------- main


def _one_line_summaries(*apps: typer.Typer) -> None:
    """``trilha --help`` lists each command with its docstring's first paragraph, whose
    line breaks (docstrings wrap at 90 columns) it kept as they were: each summary is
    made one line, which the list then wraps to the terminal's width."""
    for each in apps:
        for info in each.registered_commands:
            text = info.help or inspect.getdoc(info.callback) or ""
            first = text.split("\n\n", 1)[0]
            if info.short_help is None and "\n" in first:
                info.short_help = " ".join(first.split())


_one_line_summaries(app, keys_app)


def main() -> None:
    """Entry point: typer handles usage errors; trilha errors print their cause chain, exit 1.

    One-shot commands print WARN and worse process lines to stderr (their stdout is
    the command's answer); the long-running ones reconfigure from ``[logging]``."""
    configure_logging(LoggingConfig(level="WARN"), stream=sys.stderr)
    try:
        app()
    except TrilhaError as exc:
        _print_error(exc)
        sys.exit(1)
    except OSError as exc:
        _print_error(exc)
        sys.exit(1)


def _print_error(exc: BaseException) -> None:
    code = getattr(exc, "code", None)
    label = f"error[{code}]" if isinstance(code, str) else "error"
    err.print(f"[red]{field(label)}:[/red] {field(str(exc))}")
    cause = exc.__cause__
    while cause is not None:
        err.print(f"  [dim]caused by {type(cause).__name__}: {field(str(cause))}[/dim]")
        cause = cause.__cause__
    if _state["verbose"]:
        err.print_exception(show_locals=False)
