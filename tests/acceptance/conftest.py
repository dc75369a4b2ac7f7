"""Acceptance fixtures: the real ``trilha`` console script, run as a separate process.

Every command runs with a clean environment (no ``TRILHA_STORE`` leaking in
from the developer's shell) and, unless told otherwise, inside ``tmp_path`` so
that the default ``./trilha.db`` and ``./trilha.toml`` never touch the
repository.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from trilha.api.auth import new_key
from trilha.store import open_store

TRILHA = Path(sys.executable).parent / "trilha"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Cli:
    """Runs ``trilha`` in ``cwd``; ``spawn`` starts one in the background (killed at teardown)."""

    cwd: Path
    env: dict[str, str]
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TRILHA), *map(str, args)],
            cwd=cwd or self.cwd,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def spawn(
        self, *args: str | os.PathLike[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(TRILHA), *map(str, args)],
            cwd=self.cwd,
            env=self._env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spawned.append(proc)
        return proc


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path, clean_env())
    yield runner
    for proc in runner.spawned:  # only the processes this test started
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


# ------------------------------------------------------------------------- trilha serve


def free_port() -> int:
    """A port free now; the socket is closed, so it may be taken before the caller's
    server binds it: start the server again when it says :data:`ADDRESS_IN_USE` (as
    :func:`serve` does), or give it port 0 where it reports the port it got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: what a server says as it exits when its port was taken (EADDRINUSE), lower-cased
ADDRESS_IN_USE = "address already in use"
#: how many ports a server is started on before a test gives up
PORT_TRIES = 5
#: the institutions of ``Api``'s keys (acme_operator and acme_viewer, beta_operator, admin)
INSTITUTIONS = {"acme": "acme", "beta": "beta", "ops": "ops"}


class Drain:
    """Reads a server's output as it comes, so a server that logs much never blocks on a
    full pipe (64 KiB) while the test talks to it; ``text()`` is all of it once it ended."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.append(line)

    def text(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return "".join(self._lines)


@dataclass
class Api:
    """A real ``trilha serve`` on 127.0.0.1 with keys of two institutions and an admin."""

    url: str
    process: subprocess.Popen[str]
    store: str
    #: role name -> key: acme_operator, acme_viewer, beta_operator, admin
    keys: dict[str, str]
    #: the server's output read as it comes (``None``: the test reads ``process.stdout``)
    drain: Drain | None = None
    #: the institution each key's tenant is, by the name the keys are known by
    institutions: dict[str, str] = field(default_factory=lambda: dict(INSTITUTIONS))

    def client(self, key: str | None = "acme_operator", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def tenant(self, tag: str | None = None) -> Api:
        """The same server, with keys of institutions of their own (``acme-<tag>``,
        ``beta-<tag>``, an admin of ``ops-<tag>``; a random tag unless given): what one
        test does there is not seen by another test sharing the server (see
        :func:`module_api`)."""
        tag = tag or uuid.uuid4().hex[:10]
        institutions = {name: f"{name}-{tag}" for name in INSTITUTIONS}
        with ThreadPoolExecutor(1) as thread:
            keys = thread.submit(asyncio.run, _make_keys(self.store, institutions)).result()
        return replace(self, keys=keys, institutions=institutions)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        """Stop the server with ``sig``; its exit code and its output."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        if self.drain is not None:
            code = self.process.wait(timeout=timeout)
            return code, self.drain.text()
        output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, output


def serve(
    cli: Cli, cwd: Path, store: str, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``trilha serve`` on a free port over ``store``, once it answers ``/readyz``; started
    again on another port when the one picked was taken before it could bind it."""
    for _ in range(PORT_TRIES):
        port = free_port()
        process = subprocess.Popen(
            [str(TRILHA), "serve", "--port", str(port), "--store", store, *args],
            cwd=cwd,
            env={**cli.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        cli.spawned.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while process.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return process, url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("trilha serve did not become ready in 30 s")
            time.sleep(0.05)
        output = process.communicate(timeout=10)[0]
        # uvicorn names the address it could not bind: ours, not another listener's
        if ADDRESS_IN_USE not in output.lower() or f"'127.0.0.1', {port})" not in output:
            raise AssertionError(f"trilha serve did not become ready:\n{output}")
    raise AssertionError(f"trilha serve found no free port in {PORT_TRIES} tries")


def start_api(
    cli: Cli,
    tmp_path: Path,
    *args: str,
    config: str = '[channel]\nkind = "memory"\n',
    env: dict[str, str] | None = None,
    store: str | None = None,
    drain: bool = True,
) -> Api:
    """``trilha serve`` with its own store (a SQLite file in ``tmp_path`` unless ``store``
    names one) and config in ``tmp_path``, ready to answer; its output is read as it comes
    unless ``drain`` is false (the test reads ``process.stdout`` itself)."""
    store = store or f"sqlite:///{tmp_path / 'api.db'}"
    (tmp_path / "trilha.toml").write_text(config, encoding="utf-8")
    # in a thread of its own: a browser test's Playwright runs an event loop here
    with ThreadPoolExecutor(1) as thread:
        keys = thread.submit(asyncio.run, _make_keys(store)).result()
    process, url = serve(cli, tmp_path, store, *args, env=env)
    return Api(url, process, store, keys, Drain(process) if drain else None)


async def _make_keys(store_url: str, institutions: dict[str, str] | None = None) -> dict[str, str]:
    """The keys of ``Api``, stored as ``trilha keys create`` stores them (whose own tests
    are in test_api_basics): made in this process, four CLI starts less per server."""
    tenant = institutions or INSTITUTIONS
    store = open_store(store_url)
    await store.open()
    keys = {}
    try:
        for name, institution, role in (
            ("acme_operator", "acme", "operator"),
            ("acme_viewer", "acme", "viewer"),
            ("beta_operator", "beta", "operator"),
            ("admin", "ops", "admin"),
        ):
            key, keys[name] = new_key(tenant[institution], role, now=time.time())
            await store.create_api_key(key)
    finally:
        await store.close()
    return keys


def clean_env() -> dict[str, str]:
    """The environment every command runs with (the ``cli`` fixture's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    return env


@contextmanager
def module_api(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *args: str,
    config: str = '[channel]\nkind = "memory"\n',
    env: dict[str, str] | None = None,
) -> Iterator[Api]:
    """One ``trilha serve`` for a whole module (a module-scoped fixture's), killed at the
    end: a server start is seconds, most of a short test's time. Each test takes its own
    institutions from it with :meth:`Api.tenant`, so tests stay independent."""
    tmp = tmp_path_factory.mktemp(name)
    cli = Cli(tmp, clean_env())
    try:
        yield start_api(cli, tmp, *args, config=config, env=env)
    finally:
        for proc in cli.spawned:  # only the processes this module started
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def api(cli: Cli, tmp_path: Path) -> Api:
    """A served API with the examples published as shared flows."""
    return start_api(cli, tmp_path, "--flows", str(EXAMPLES))
