"""A throwaway PostgreSQL cluster for the tests and the benchmarks.

The PostgreSQL backend is tested against a real server, never a mock, and that
server must not be one a developer or CI happens to run: :class:`PgCluster`
makes its own with ``initdb`` in a folder of its own, on a free port of
127.0.0.1, with trust authentication (the only client is this machine's test
run) and superuser ``trilha``, and removes it again. It needs only the server
binaries: ``initdb``/``pg_ctl`` on ``PATH``, else the newest
``/usr/lib/postgresql/N/bin`` (Debian's ``postgresql`` package, which
``.ci/run`` installs when missing).

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: then
every server command runs as Debian's ``postgres`` user, who is given the
folder. Otherwise they run as the current user.

By default the server trades durability for speed (``fsync``, and with it
``full_page_writes``, off): a committed transaction still survives a *server*
crash (``restart(mode="immediate")``), since ``synchronous_commit`` stays on and
the WAL reaches the kernel before the commit returns, but not a machine crash.
``durable=True`` keeps PostgreSQL's defaults for the tests about crashes.
Without a folder given, a throwaway cluster lives in ``/dev/shm`` when that
tmpfs has room (cloning a database there takes ~10 ms, against ~80-250 ms on
this machine's disk even with ``fsync`` off), a durable one under ``$TMPDIR``.

A cluster is stopped at the latest when this process exits (a ``weakref``
finalizer, which also runs at interpreter exit), so a failed test run leaves no
postmaster behind; only a SIGKILL of the test process itself can.

From a shell, for benchmarks and people::

    python tests/pgcluster.py start DIR [--durable]   # prints the DSN, leaves it running
    python tests/pgcluster.py stop DIR

In Python::

    with PgCluster() as cluster:            # a temporary folder, removed on exit
        cluster.create_database("t1")
        store = open_store(cluster.url("t1"))
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import asyncpg

__all__ = ["PgCluster", "PgClusterError", "find_bin_dir", "quote_ident", "run_sync", "temp_root"]

#: the superuser ``initdb`` creates; every URL logs in as it (trust auth, no password)
SUPERUSER = "trilha"
#: the account the server runs as when this process is root (Debian's package creates it)
SERVER_ACCOUNT = "postgres"
#: seconds ``pg_ctl`` may wait for a start or a stop
PG_CTL_TIMEOUT = 60
#: memory-backed folder for throwaway clusters, used when it has this much room
FAST_TEMP_ROOT = Path("/dev/shm")
FAST_TEMP_MIN_FREE = 1 << 30

StopMode = Literal["smart", "fast", "immediate"]
T = TypeVar("T")


class PgClusterError(RuntimeError):
    """A server command failed; the message carries its output and the server log's tail."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``initdb`` on ``PATH`` wins (symlinks resolved, so ``pg_ctl`` finds its
    ``postgres`` beside it); else the highest version under
    ``/usr/lib/postgresql``, where Debian puts them off ``PATH``.
    """
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").exists():
        return Path(on_path).resolve().parent
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]

    def version(bin_dir: Path) -> tuple[int, ...]:
        name = bin_dir.parent.name
        return tuple(int(x) for x in name.split(".")) if name.replace(".", "").isdigit() else ()

    if not candidates:
        raise PgClusterError(
            "no PostgreSQL server binaries: neither initdb on PATH nor "
            "/usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)"
        )
    return max(candidates, key=version)


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on right now (the start retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temp_root(durable: bool) -> Path | None:
    """Where a temporary cluster folder goes: ``/dev/shm`` for a throwaway one when it
    is a writable tmpfs with room (a container's default 64 MiB is not), else ``None``
    (``tempfile``'s default, on disk)."""
    if durable or not FAST_TEMP_ROOT.is_dir() or not os.access(FAST_TEMP_ROOT, os.W_OK):
        return None
    if shutil.disk_usage(FAST_TEMP_ROOT).free < FAST_TEMP_MIN_FREE:
        return None
    return FAST_TEMP_ROOT


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier (database names cannot be bound as parameters)."""
    return '"' + name.replace('"', '""') + '"'


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code.

    In a short-lived thread with its own event loop, so it works both from plain
    code and from under a running loop (a sync fixture set up by an async one).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgcluster") as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class _Account:
    """Who runs the server commands: ``None`` ids mean this process's own user."""

    name: str
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_this_process(cls) -> _Account:
        if os.geteuid() != 0:
            return cls(pwd.getpwuid(os.geteuid()).pw_name)
        try:
            entry = pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            raise PgClusterError(
                f"running as root, and PostgreSQL refuses root: no {SERVER_ACCOUNT!r} user "
                "to run it as (Debian's postgresql package creates one)"
            ) from None
        return cls(SERVER_ACCOUNT, entry.pw_uid, entry.pw_gid)

    def give(self, path: Path) -> None:
        """Make ``path`` the server account's (a no-op without a switch of user)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def check_writable(self, path: Path) -> None:
        """Fail early, and say why, when the server account cannot use ``path``."""
        if (
            self.uid is None
            or self.run(["test", "-w", path, "-a", "-x", path], cwd=Path("/")).returncode == 0
        ):
            return
        raise PgClusterError(
            f"the server runs as {self.name!r}, who cannot write {path}: pick a folder it "
            "can reach (e.g. under /tmp; not under /root or pytest's 0700 tmp_path)"
        )

    def run(self, argv: Sequence[str | Path], *, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run a server command as this account, its output captured, never raising."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        switch: dict[str, Any] = {}
        if self.uid is not None:
            switch = {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **switch,
        )


def _pg_ctl_stop(
    account: _Account, bin_dir: Path, data_dir: Path, mode: StopMode
) -> subprocess.CompletedProcess[str]:
    return account.run(
        [bin_dir / "pg_ctl", "stop", "-D", data_dir, "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT)],
        cwd=data_dir.parent,
    )


def _running_pid(data_dir: Path) -> int | None:
    """The postmaster's pid from ``postmaster.pid``, if that process is alive."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:  # alive, another user's (not ours to judge)
        return pid
    return pid


def _finalize(account: _Account, bin_dir: Path, data_dir: Path, remove: Path | None) -> None:
    """Stop a forgotten server (``fast``, then ``immediate``) and remove its temporary folder.

    Module-level and given only plain values: a ``weakref.finalize`` callback
    must not hold the :class:`PgCluster` alive.
    """
    if _running_pid(data_dir) is not None:
        done = _pg_ctl_stop(account, bin_dir, data_dir, "fast")
        if done.returncode != 0 and _running_pid(data_dir) is not None:
            _pg_ctl_stop(account, bin_dir, data_dir, "immediate")
    if remove is not None and _running_pid(data_dir) is None:
        shutil.rmtree(remove, ignore_errors=True)


class PgCluster:
    """One PostgreSQL server in a folder of its own, on 127.0.0.1, for tests.

    ``directory`` holds ``data/`` (the cluster), the Unix socket and
    ``postgres.log``; without one, a temporary folder is made (:func:`temp_root`)
    and removed by :meth:`close`. A folder that already holds a cluster is
    started as it is (no new ``initdb``), and one whose server already runs is
    adopted. As root, the folder must be reachable by ``postgres``: not under
    ``/root`` nor pytest's ``tmp_path`` (a 0700 ``/tmp/pytest-of-root``).

    ``settings`` are extra ``postgres -c`` parameters over the throwaway
    defaults of :meth:`server_settings`.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        durable: bool = False,
        port: int | None = None,
        bin_dir: Path | None = None,
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        self.durable = durable
        self.bin_dir = bin_dir or find_bin_dir()
        self._account = _Account.for_this_process()
        self._wanted_port = port
        self._settings = dict(settings or {})
        self._port: int | None = None
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="trilha-pg-", dir=temp_root(durable)))
            self._owns_directory = True
        else:
            self.directory = Path(directory).absolute()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._owns_directory = False
        self._account.give(self.directory)
        self._account.check_writable(self.directory)
        self._finalizer = weakref.finalize(
            self,
            _finalize,
            self._account,
            self.bin_dir,
            self.data_dir,
            self.directory if self._owns_directory else None,
        )

    # where ----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise PgClusterError("the cluster is not started")
        return self._port

    @property
    def dsn(self) -> str:
        """The superuser's URL of the ``postgres`` database."""
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        """``postgresql://trilha@127.0.0.1:PORT/DBNAME``, what ``open_store`` takes."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, while it runs."""
        return _running_pid(self.data_dir)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def server_settings(self) -> dict[str, str | int]:
        """The ``-c`` parameters: a server only this process reaches, small and quick."""
        settings: dict[str, str | int] = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.directory),
            "max_connections": 200,  # the contract suite opens pools on two handles at a time
            "shared_buffers": "32MB",
            "max_wal_size": "256MB",  # bounds a tmpfs folder; checkpoints are cheap without fsync
            "jit": "off",  # compiling never pays off on a test's few rows
            "log_min_messages": "warning",
        }
        if not self.durable:
            settings.update({"fsync": "off", "full_page_writes": "off"})
        settings.update(self._settings)
        return settings

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """``initdb`` if the folder holds no cluster yet, then start the server and wait.

        A port taken between choosing and binding it (another process's race) is
        retried on a new one, unless the port was given.
        """
        if self.running:
            self._port = self._port_from_pid_file()
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        attempts = 1 if self._wanted_port else 3
        for attempt in range(attempts):
            self._port = self._wanted_port or free_port()
            done = self._pg_ctl("start", "-l", self.log_file, "-o", self._options())
            if done.returncode == 0:
                break
            if attempt == attempts - 1 or "could not bind" not in self._log_tail():
                self._port = None
                raise self._error("pg_ctl start", done)
        return self

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server and wait until the postmaster and its children are gone."""
        if not self.running:
            return
        done = _pg_ctl_stop(self._account, self.bin_dir, self.data_dir, mode)
        if done.returncode != 0 and self.running:
            raise self._error(f"pg_ctl stop -m {mode}", done)

    def restart(self, mode: StopMode = "immediate") -> None:
        """``pg_ctl restart -m MODE`` on the same port: ``immediate`` is a server crash
        (no shutdown checkpoint; the start replays the WAL), what the crash tests want."""
        done = self._pg_ctl("restart", "-m", mode, "-l", self.log_file, "-o", self._options())
        if done.returncode != 0:
            raise self._error(f"pg_ctl restart -m {mode}", done)

    def close(self) -> None:
        """Stop the server and remove the folder if it was a temporary one."""
        self._finalizer()

    def detach(self) -> None:
        """Leave the server running after this object and this process are gone."""
        self._finalizer.detach()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"port {self._port}" if self.running else "stopped"
        return f"<PgCluster {self.directory} {state}>"

    # databases ------------------------------------------------------------------------
    async def connect(self, dbname: str = "postgres") -> asyncpg.Connection:
        """A new asyncpg connection as the superuser (the caller closes it)."""
        return await asyncpg.connect(self.url(dbname))

    async def execute_async(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` (no parameters, simple protocol: ``CREATE DATABASE`` may run)."""
        conn = await self.connect(dbname)
        try:
            return str(await conn.execute(sql))
        finally:
            await conn.close()

    async def create_database_async(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]``; the template must have no sessions."""
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {quote_ident(template)}"
        await self.execute_async(sql)

    async def drop_database_async(self, name: str) -> None:
        """Drop ``name`` if it exists, ending whatever sessions it still has (``FORCE``)."""
        await self.execute_async(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def execute(self, sql: str, dbname: str = "postgres") -> str:
        return run_sync(self.execute_async(sql, dbname))

    def create_database(self, name: str, template: str | None = None) -> None:
        run_sync(self.create_database_async(name, template))

    def drop_database(self, name: str) -> None:
        run_sync(self.drop_database_async(name))

    # internals ------------------------------------------------------------------------
    def _initdb(self) -> None:
        argv: list[str | Path] = [
            self.bin_dir / "initdb",
            "-D",
            self.data_dir,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            argv.append("--no-sync")  # a throwaway cluster need not reach the disk
        done = self._account.run(argv, cwd=self.directory)
        if done.returncode != 0:
            raise self._error("initdb", done)

    def _options(self) -> str:
        """``postgres`` arguments for ``pg_ctl -o`` (which passes them through a shell)."""
        parts = ["-p", str(self.port)]
        for key, value in self.server_settings().items():
            parts += ["-c", f"{key}={value}"]
        return " ".join(shlex.quote(p) for p in parts)

    def _pg_ctl(self, action: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self._account.run(
            [
                self.bin_dir / "pg_ctl",
                action,
                "-D",
                self.data_dir,
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT),
                *args,
            ],
            cwd=self.directory,
        )

    def _port_from_pid_file(self) -> int:
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, ...
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])

    def _log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _error(self, what: str, done: subprocess.CompletedProcess[str]) -> PgClusterError:
        return PgClusterError(
            f"{what} failed (exit {done.returncode}) in {self.directory}\n"
            f"{done.stdout}{done.stderr}\n--- {self.log_file} (tail)\n{self._log_tail()}"
        )


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/pgcluster.py",
        description="Start or stop a throwaway PostgreSQL cluster in a folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start it (initdb on first use); print the DSN")
    start.add_argument("directory", type=Path)
    start.add_argument("--durable", action="store_true", help="keep fsync on")
    start.add_argument("--port", type=int, default=None, help="default: a free one")
    stop = commands.add_parser("stop", help="stop it (the folder stays)")
    stop.add_argument("directory", type=Path)
    stop.add_argument("--mode", choices=["smart", "fast", "immediate"], default="fast")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            cluster = PgCluster(args.directory, durable=args.durable, port=args.port).start()
            cluster.detach()  # it outlives this command until `stop`
            print(cluster.dsn)
        else:
            cluster = PgCluster(args.directory)
            cluster.detach()
            cluster.stop(args.mode)
    except PgClusterError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
