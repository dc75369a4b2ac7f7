"""Assembling ``trilha demo``: the stand-ins the flows call, started on 127.0.0.1, and
the configuration that declares them, so the examples run end to end with nothing
else installed and no WARN line at start.

The configuration is the flows folder's own ``trilha.toml`` when it has one (the
examples' declares ``agenda`` and ``booking``, its triggers and its calendar), with
each stand-in's address in place of the one declared; a stand-in listens on that
declared port when it is free (``examples/trilha.toml``: 8765 and 8766), else on any.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trilha.config import Config, DependencyConfig, load_config
from trilha.core.flow import Flow, dependencies_used
from trilha.demo import standin
from trilha.demo.agenda import Agenda
from trilha.demo.booking import Booking
from trilha.demo.standin import StandIn
from trilha.errors import ConfigError

#: the flows folder's configuration file the demo reads when it has one
CONFIG_NAME = "trilha.toml"
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Kind:
    """A stand-in trilha ships: how to make one, its usual port, how it is declared
    when the configuration does not declare it."""

    make: Callable[[], StandIn]
    port: int
    declared: dict[str, Any]


#: the stand-ins, by the dependency name they play
KINDS: dict[str, Kind] = {
    "agenda": Kind(Agenda, 8765, {"timeout_seconds": 5}),
    "booking": Kind(Booking, 8766, {"timeout_seconds": 5, "idempotent": True}),
}


@dataclass(slots=True)
class Running:
    """One stand-in serving in this process's threads."""

    name: str
    url: str
    state: StandIn
    server: ThreadingHTTPServer
    #: the ids of the flows that call it
    flows: list[str]
    #: the port it was declared on, when that one was taken and it listens elsewhere
    wanted: int | None = None
    thread: threading.Thread | None = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(slots=True)
class Demo:
    """The running stand-ins and the configuration that points the flows at them."""

    config: Config
    standins: list[Running] = field(default_factory=list)

    def lines(self, api_url: str, key_file: Path | None, flows: Path) -> list[str]:
        """What runs where and how to try it, for a person reading the terminal."""
        key = f"the key: cat {key_file}" if key_file else "a key: trilha keys create"
        shown = [
            f"trilha demo: the flows of {flows} with stand-ins for the services they call",
            f"  API        {api_url}  (interactive docs at {api_url}/docs)",
            f"  debugger   {api_url}/debugger  ({key})",
        ]
        for s in self.standins:
            state = "DOWN (503)" if s.state.down else "up"
            moved = f"; {s.wanted} was taken" if s.wanted else ""
            shown.append(
                f"  {s.name:<10} {s.url}  stand-in for {', '.join(s.flows)}, {state}{moved}"
            )
        if self.standins:
            first = self.standins[0]
            shown.append(
                f"  take one down and up: curl -X POST {first.url}/down (then {first.url}/up)"
            )
        shown.append("  try it: the README's five-minute tour; Ctrl-C stops everything")
        return shown

    def close(self) -> None:
        for s in self.standins:
            s.stop()


def demo_config(flows_dir: Path) -> Config:
    """The flows folder's ``trilha.toml``, or the defaults when it has none."""
    path = flows_dir / CONFIG_NAME
    return load_config(path) if path.is_file() else Config()


def _bind(state: StandIn, port: int) -> tuple[ThreadingHTTPServer, bool]:
    """``state`` served on ``port``, or on a free port when that one is taken (``True``)."""
    try:
        return standin.make_server(state, HOST, port), False
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(
                f"cannot serve the {state.name} stand-in on {HOST}:{port}: {exc.strerror or exc}"
            ) from exc
    return standin.make_server(state, HOST, 0), True


def _declared_port(dep: DependencyConfig | None, usual: int) -> int:
    """The port a declaration on this machine names, else the stand-in's usual one."""
    if dep is None:
        return usual
    parts = urlsplit(dep.base_url)
    if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
        return parts.port
    return usual


@contextmanager
def start_demo(flows: list[Flow], base: Config, down: set[str]) -> Iterator[Demo]:
    """The stand-ins for the dependencies ``flows`` call that trilha has one for, serving
    until the block ends, and ``base`` with each declared at its address (``down``:
    names of stand-ins that start answering 503)."""
    unknown = sorted(down - set(KINDS))
    if unknown:
        raise ConfigError(
            f"--down {unknown[0]}: no stand-in of that name (there are {', '.join(KINDS)})"
        )
    callers: dict[str, list[str]] = {}
    for flow in flows:
        for _, name in dependencies_used(flow):
            if name in KINDS and flow.id not in callers.setdefault(name, []):
                callers[name].append(flow.id)
    missing = sorted(down - set(callers))
    if missing:
        raise ConfigError(f"--down {missing[0]}: no flow of the folder calls it")
    demo = Demo(base)
    dependencies = dict(base.dependencies)
    try:
        for name in sorted(callers):
            kind = KINDS[name]
            declared = dependencies.get(name)
            state = kind.make()
            state.down = name in down
            port = _declared_port(declared, kind.port)
            server, moved = _bind(state, port)
            url = f"http://{HOST}:{server.server_address[1]}"
            running = Running(name, url, state, server, callers[name], port if moved else None)
            running.thread = threading.Thread(
                target=server.serve_forever, name=f"standin-{name}", daemon=True
            )
            running.thread.start()
            demo.standins.append(running)
            if declared is None:
                dependencies[name] = DependencyConfig.model_validate(
                    {"base_url": url, **kind.declared}
                )
            else:
                dependencies[name] = declared.model_copy(update={"base_url": url})
        demo.config = base.model_copy(update={"dependencies": dependencies})
        yield demo
    finally:
        demo.close()
