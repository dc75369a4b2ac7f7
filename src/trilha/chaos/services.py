"""The dependencies of a chaos run: real HTTP on 127.0.0.1, and gates that cut them.

Every declared dependency is reached through a :class:`Gate`: a TCP forwarder on
a port of its own that can stop listening (connections refused, the open ones
reset) and come back on the same port, as a service that goes down and
restarts. Behind a gate is either the user's own service (``--config`` names
it) or a :class:`StandIn` that answers the built-in flows' calls the same way
every time; told :meth:`Services.fail_inputs`, a stand-in fails a share of its
requests, the same ones every time (a partial failure: a gate, which does not read
HTTP, cannot do that to the user's own service); told :meth:`Services.fail_randomly`,
it fails a share of its calls at random (a flaky dependency). Both run in the chaos run's event
loop: no threads, so a simulated run stays deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from trilha.chaos.scenarios import InputFailures, RandomFailures
from trilha.core.faults import FaultPlan

#: an answer: (status, JSON body)
Answer = tuple[int, Any]
Route = Callable[[str, str, Any], Answer]


def _stable(text: str, modulo: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % modulo


def standin_answer(name: str, method: str, path: str, body: Any) -> Answer:
    """What the built-in flows' services answer: a fixed function of the request."""
    route = urlsplit(path).path
    if route == "/health":
        return 200, {"ok": True}
    if name == "crm" and route.startswith("/customers/"):
        customer = route.rsplit("/", 1)[1]
        return 200, {"id": customer, "vip": _stable(customer, 5) == 0, "since": 2020}
    if name == "score" and route == "/score":
        who = json.dumps(body, sort_keys=True)
        return 200, {"value": 300 + _stable(who, 600)}
    if name == "agenda" and route == "/slots":
        return 200, {"slots": [{"label": f"dia {d}, 10h"} for d in (3, 4, 5)]}
    if name == "notify" and route == "/notify":
        return 200, {"sent": True}
    return 404, {"error": f"no route {method} {route} on {name}"}


class StandIn:
    """A minimal HTTP/1.1 JSON server (keep-alive, Content-Length bodies)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        #: real seconds each answer takes (the crash scenario's slow calls, during which
        #: a worker holds its lease); the simulation keeps it at 0
        self.delay_seconds = 0.0
        #: the inputs it fails (a partial failure), with the run's seed
        self.failing: tuple[InputFailures, int] | None = None
        #: requests it failed so
        self.failed = 0
        #: the share of its calls it fails at random (a flaky dependency), with the seed
        self.flaky: tuple[RandomFailures, int] | None = None
        #: requests it failed at random, and requests it answered while flaky
        self.flaked = 0
        self.flaky_requests = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _flaky_fault(self) -> str | None:
        """The fault to serve this request when flaky (``None``: answer it)."""
        if self.flaky is None:
            return None
        self.flaky_requests += 1
        fault = self.flaky[0].fault(self.flaky[1], self.flaky_requests)
        self.flaked += fault is not None
        return fault

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length":
                        length = int(value.strip())
                raw = await reader.readexactly(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                self.requests += 1
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                fault = self._flaky_fault()
                if fault == "reset":
                    return  # the connection is cut without an answer (finally: abort)
                status, answer = standin_answer(self.name, method, target, body)
                if fault is not None:
                    status, answer = int(fault), {"error": "try again later"}
                if self.failing is not None and self.failing[0].fails(
                    self.failing[1], method, target
                ):
                    self.failed += 1
                    status, answer = self.failing[0].status, {"error": "internal error"}
                payload = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.transport.abort()


class Gate:
    """A TCP forwarder to ``target`` that can go down and come back on its port."""

    def __init__(self, name: str, target_host: str, target_port: int) -> None:
        self.name = name
        self.target = (target_host, target_port)
        self.port = 0
        self.downs = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again): on the same port as before, once it had one."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._forward, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and reset every open connection: the service is gone."""
        server, self._server = self._server, None
        if server is None:
            return
        self.downs += 1
        server.close()
        for writer in list(self._open):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class Services:
    """Every dependency of the run behind its gate; stand-ins for those the
    configuration does not declare (the built-in flows' services)."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.standins: dict[str, StandIn] = {}
        self._paths: dict[str, str] = {}

    @classmethod
    async def start(cls, used: list[str], declared: dict[str, str]) -> Services:
        """Gates for the dependencies ``used`` by the flows; ``declared`` maps a name to
        the base URL the configuration gives it (its own service, reached through the
        gate), the others get a stand-in."""
        services = cls()
        for name in used:
            base = declared.get(name)
            if base is None:
                standin = StandIn(name)
                await standin.start()
                services.standins[name] = standin
                host, port, path = "127.0.0.1", standin.port, ""
            else:
                parts = urlsplit(base)
                host = parts.hostname or "127.0.0.1"
                port = parts.port or (443 if parts.scheme == "https" else 80)
                path = parts.path.rstrip("/")
            gate = Gate(name, host, port)
            await gate.start()
            services.gates[name] = gate
            services._paths[name] = path
        return services

    def base_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.gates[name].port}{self._paths[name]}"

    async def apply(self, plan: FaultPlan, elapsed: float) -> int:
        """Each gate down or up as the plan says for this moment; how many went down."""
        downs = 0
        for name, gate in self.gates.items():
            if plan.dependency_down(name, elapsed):
                downs += gate.up
                await gate.stop()
            else:
                await gate.start()
        return downs

    def fail_inputs(self, failures: InputFailures, seed: int) -> bool:
        """Make the stand-in of ``failures.dependency`` fail those inputs; False when the
        dependency is the configuration's own service (behind a gate that cannot)."""
        standin = self.standins.get(failures.dependency)
        if standin is None:
            return False
        standin.failing = (failures, seed)
        return True

    def fail_randomly(self, failures: RandomFailures, seed: int) -> bool:
        """Make the stand-in of ``failures.dependency`` fail that share of its calls at
        random; False when the dependency is the configuration's own service."""
        standin = self.standins.get(failures.dependency)
        if standin is None:
            return False
        standin.flaky = (failures, seed)
        return True

    def flaky_calls(self) -> tuple[int, int]:
        """(requests, of which failed at random) by the flaky stand-ins since the last
        :meth:`reset`."""
        return (
            sum(standin.flaky_requests for standin in self.standins.values()),
            sum(standin.flaked for standin in self.standins.values()),
        )

    def failed_inputs(self) -> int:
        """Requests the stand-ins failed by input since the last :meth:`reset`."""
        return sum(standin.failed for standin in self.standins.values())

    async def reset(self) -> None:
        """Every gate up again and every stand-in answering every input (between
        scenarios)."""
        for gate in self.gates.values():
            await gate.start()
        for standin in self.standins.values():
            standin.failing = None
            standin.failed = 0
            standin.flaky = None
            standin.flaked = standin.flaky_requests = 0

    async def close(self) -> None:
        for gate in self.gates.values():
            await gate.stop()
        for standin in self.standins.values():
            await standin.close()
