"""Crash safety with real processes: a worker SIGKILLed mid-flow, two workers on one file.

The executions are created in this process through the library (there is no
"start only" command); everything else runs in ``trilha worker`` processes
over a SQLite file, and the outcome is read back with ``trilha show --json``
and with ``sqlite3`` directly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trilha.core.flow import load_flow
from trilha.core.states import TRANSITIONS, ExecutionStatus
from trilha.runtime import runtime

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------- helpers


def write_config(path: Path, *, dependency_url: str | None = None, engine: str = "") -> Path:
    text = '[channel]\nkind = "memory"\n'
    if engine:
        text += f"\n[engine]\n{engine}\n"
    if dependency_url is not None:
        text += f'\n[dependencies.slow]\nbase_url = "{dependency_url}"\ntimeout_seconds = 20\n'
    path.write_text(text, encoding="utf-8")
    return path


def create_executions(
    store: str,
    config: Path,
    flows: list[dict[str, Any]],
    starts: list[tuple[str, dict[str, Any]]],
) -> list[str]:
    """Publish ``flows`` and start one execution per ``(flow id, variables)``; no step runs."""

    async def main() -> list[str]:
        async with runtime(store, config) as rt:
            for flow in flows:
                await rt.engine.publish(load_flow(flow, rt.engine.processors.node_types))
            ids = []
            for i, (flow_id, variables) in enumerate(starts):
                ex = await rt.engine.start(
                    flow_id,
                    institution_id="inst-1",
                    conversation_id=f"conv-{i}",
                    contact_id=f"contact-{i}",
                    variables=variables,
                    actor="test",
                )
                ids.append(ex.id)
            return ids

    return asyncio.run(main())


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def show(cli: Any, execution_id: str, store: str) -> dict[str, Any]:
    result = cli("show", execution_id, "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def check_history(history: list[dict[str, Any]]) -> None:
    """Every step is allowed by the one table and starts where the previous one ended."""
    assert history, "no state history"
    previous: str | None = None
    for i, step in enumerate(history):
        assert step["from"] == previous, (i, history)
        source = ExecutionStatus(step["from"]) if step["from"] else None
        target = ExecutionStatus(step["to"])
        assert target in TRANSITIONS[source], (i, history)
        previous = step["to"]


def check_checkpoints(db: Path, execution_id: str, node_ids: list[str]) -> None:
    """One checkpoint per node run, seqs 1..n without gap or repeat, in the flow's order."""
    rows = query(
        db, "SELECT seq, node_id FROM checkpoints WHERE execution_id = ? ORDER BY seq", execution_id
    )
    seqs = [r[0] for r in rows]
    assert len(seqs) == len(set(seqs))
    assert seqs == list(range(1, len(node_ids) + 1)), rows
    assert [r[1] for r in rows] == node_ids


def check_outbox(db: Path, execution_id: str, texts: list[str]) -> None:
    """Each bot message is in the outbox exactly once, in order, delivered exactly once."""
    rows = query(
        db,
        "SELECT idempotency_key, text, status, attempts FROM outbox"
        " WHERE execution_id = ? ORDER BY id",
        execution_id,
    )
    assert [r[1] for r in rows] == texts
    assert len({r[0] for r in rows}) == len(rows)
    assert all(r[2] == "sent" and r[3] == 1 for r in rows), rows


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def end_node(text: str) -> dict[str, Any]:
    return {"id": "bye", "type": "end", "text": text}


# ----------------------------------------------------------------------- killed mid http call


SLOW_CALL = {
    "id": "slow-call",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Checking your account...", "next": "lookup"},
        {
            "id": "lookup",
            "type": "http",
            "dependency": "slow",
            "method": "GET",
            "url": "/customers/{{cpf}}",
            "saveAs": "customer",
            "timeoutSeconds": 20,
            "next": "answer",
        },
        {
            "id": "answer",
            "type": "message",
            "text": "{{customer.name}}, your balance is {{customer.balance}}.",
            "next": "bye",
        },
        end_node("Bye!"),
    ],
}
SLOW_CALL_TEXTS = ["Checking your account...", "Ana, your balance is 10.", "Bye!"]


def test_worker_killed_inside_a_slow_http_node(cli: Any, tmp_path: Path, http_server: Any) -> None:
    """SIGKILL during an http call: a new worker re-runs the call and finishes, nothing doubled."""
    http_server.route("GET", "/customers/123", body={"name": "Ana", "balance": 10}, delay=2.5)
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path / "trilha.toml", dependency_url=http_server.url)
    [execution_id] = create_executions(store, config, [SLOW_CALL], [("slow-call", {"cpf": "123"})])
    worker_args = ("worker", "--store", store, "--config", config, "--lease-seconds", "1")

    first = cli.spawn(*worker_args)
    wait_for("the http call", lambda: len(http_server.requests) >= 1)
    # the step before the effect is durable before the call is made
    assert query(db, "SELECT status, step_seq FROM executions")[0] == ("running", 1)
    kill(first)
    assert len(http_server.requests) == 1

    second = cli(*worker_args, "--until-idle", timeout=30)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr

    ex = show(cli, execution_id, store)
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    assert ex["variables"]["customer"] == {"name": "Ana", "balance": 10}
    assert [t["text"] for t in ex["transcript"] if t["from"] == "bot"] == SLOW_CALL_TEXTS
    assert [t["from"] for t in ex["transcript"]] == ["bot"] * len(SLOW_CALL_TEXTS)
    check_history(ex["history"])
    assert [h["to"] for h in ex["history"]] == ["running", "completed"]
    check_checkpoints(db, execution_id, ["hello", "lookup", "answer", "bye"])
    check_outbox(db, execution_id, SLOW_CALL_TEXTS)
    # the interrupted call was made again (at least once), and only once more
    assert [r["path"] for r in http_server.requests] == ["/customers/123"] * 2


def freeze_outside_a_write(process: Any, db: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no write transaction on ``db``: frozen
    inside its call, not inside one of the writes its other tasks make meanwhile (its
    dispatcher polling the outbox, its lease renewals). A process stopped while it holds
    SQLite's write lock locks every other writer out, which is SQLite's rule, not what
    this test is about."""
    for _ in range(100):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.02)
        conn = sqlite3.connect(db, timeout=0.1, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            conn.close()
    raise AssertionError("the worker always held the write lock")


class Lines:
    """Reads a spawned process's stdout (JSON log lines) as it writes them, so a test
    can wait for a line instead of sleeping."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for text in self._stdout:
            if text.startswith("{"):
                self.lines.append(json.loads(text))

    def first(self, what: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found.extend(line for line in list(self.lines) if predicate(line))
            return bool(found)

        wait_for(what, seen, timeout=30)
        return found[0]

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_a_frozen_worker_cannot_commit_after_losing_its_lease(
    cli: Any, tmp_path: Path, http_server: Any
) -> None:
    """SIGSTOP mid-call, another worker takes over and finishes, SIGCONT: the thawed worker
    ends its call, tries to commit the late step, and the fence refuses it (its log says
    so); nothing it did reaches the store."""
    http_server.route("GET", "/customers/123", body={"name": "Ana", "balance": 10}, delay=2.5)
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    # three missed beats (0.6 s) free a frozen worker's leases for the other worker
    config = write_config(
        tmp_path / "trilha.toml", dependency_url=http_server.url, engine="heartbeat_seconds = 0.2"
    )
    [execution_id] = create_executions(store, config, [SLOW_CALL], [("slow-call", {"cpf": "123"})])

    # a long lease: it is renewed every 20 s during the call, so the thawed worker's call
    # ends before any renewal and the late step reaches the commit (the fence under test)
    frozen = cli.spawn("worker", "--store", store, "--config", config, "--lease-seconds", "60")
    lines = Lines(frozen)
    wait_for("the http call", lambda: len(http_server.requests) >= 1)
    freeze_outside_a_write(frozen, db)
    tables = ("executions", "checkpoints", "outbox", "transitions", "handoffs")
    try:
        second = cli(
            "worker", "--store", store, "--config", config, "--lease-seconds", "1",
            "--until-idle", timeout=60,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        before = {t: query(db, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}  # noqa: S608
        assert before["executions"][0][0] == execution_id
    finally:
        frozen.send_signal(signal.SIGCONT)
    refused = lines.first(
        "the thawed worker's refused commit",
        lambda line: (
            line["message"] == "execution.lease_lost" and line["executionId"] == execution_id
        ),
    )
    assert refused["level"] == "WARN"
    assert refused["context"]["error"]["type"] == "StaleLease"
    assert "commit on" in refused["context"]["error"]["message"]
    assert "refused" in refused["context"]["error"]["message"]
    after = {t: query(db, f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}  # noqa: S608
    assert after == before
    frozen.send_signal(signal.SIGTERM)
    assert frozen.wait(timeout=10) == 0
    lines.join()
    assert frozen.stderr is not None
    assert "Traceback" not in frozen.stderr.read()
    assert [line["message"] for line in lines.lines].count("execution.lease_lost") == 1

    ex = show(cli, execution_id, store)
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    assert [t["text"] for t in ex["transcript"]] == SLOW_CALL_TEXTS
    check_history(ex["history"])
    check_checkpoints(db, execution_id, ["hello", "lookup", "answer", "bye"])
    check_outbox(db, execution_id, SLOW_CALL_TEXTS)
    assert len(http_server.requests) == 2


def test_sigterm_lets_the_running_step_finish(cli: Any, tmp_path: Path, http_server: Any) -> None:
    """SIGTERM during an http call: the call completes, the turn commits, the worker exits 0."""
    http_server.route("GET", "/customers/123", body={"name": "Ana", "balance": 10}, delay=1.5)
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path / "trilha.toml", dependency_url=http_server.url)
    [execution_id] = create_executions(store, config, [SLOW_CALL], [("slow-call", {"cpf": "123"})])

    worker = cli.spawn("worker", "--store", store, "--config", config)
    wait_for("the http call", lambda: len(http_server.requests) >= 1)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=15)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr

    ex = show(cli, execution_id, store)
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    check_history(ex["history"])
    check_checkpoints(db, execution_id, ["hello", "lookup", "answer", "bye"])
    check_outbox(db, execution_id, SLOW_CALL_TEXTS)
    assert len(http_server.requests) == 1


# --------------------------------------------------------------------------- killed in a delay


DELAYED = {
    "id": "delayed",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Give me a moment.", "next": "pause"},
        {"id": "pause", "type": "delay", "seconds": 2, "next": "back"},
        {"id": "back", "type": "message", "text": "I am back, {{who}}.", "next": "bye"},
        end_node("Bye!"),
    ],
}
DELAYED_TEXTS = ["Give me a moment.", "I am back, Bia.", "Bye!"]


def test_worker_killed_while_waiting_on_a_delay(cli: Any, tmp_path: Path) -> None:
    """SIGKILL while `waiting_delay`: a new worker fires the timer at its due time, once."""
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path / "trilha.toml")
    [execution_id] = create_executions(store, config, [DELAYED], [("delayed", {"who": "Bia"})])
    worker_args = ("worker", "--store", store, "--config", config, "--lease-seconds", "1")

    first = cli.spawn(*worker_args)
    waiting = "SELECT status, step_seq, due_at, wake_at, waiting_for FROM executions"
    seen: list[tuple[Any, ...]] = []

    def waiting_and_delivered() -> bool:
        seen[:] = query(db, waiting)
        pending = query(db, "SELECT COUNT(*) FROM outbox WHERE status != 'sent'")[0][0]
        return bool(seen[0][0] == "waiting_delay" and pending == 0)

    wait_for("the delay", waiting_and_delivered)
    kill(first)
    # read before the kill, and unchanged after it: the worker died while it waited (not
    # a clock reading taken later, which a slow machine would push past the due time)
    [(_, _, due_at, wake_at, waiting_for)] = seen
    assert query(db, waiting) == seen, "the killed worker had fired the timer already"
    assert waiting_for == "timer"
    assert wake_at == due_at

    second = cli.spawn(*worker_args)
    wait_for(
        "completion",
        lambda: query(db, "SELECT status FROM executions")[0][0] == "completed",
        timeout=15,
    )
    second.send_signal(signal.SIGTERM)
    _, stderr = second.communicate(timeout=10)
    assert second.returncode == 0, stderr
    assert "Traceback" not in stderr

    [(ended_at,)] = query(db, "SELECT ended_at FROM executions")
    assert ended_at >= due_at
    ex = show(cli, execution_id, store)
    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    assert [t["text"] for t in ex["transcript"] if t["from"] == "bot"] == DELAYED_TEXTS
    check_history(ex["history"])
    assert [h["to"] for h in ex["history"]] == ["running", "waiting_delay", "running", "completed"]
    check_checkpoints(db, execution_id, ["hello", "pause", "pause", "back", "bye"])
    check_outbox(db, execution_id, DELAYED_TEXTS)


# ------------------------------------------------------------------ two workers, one SQLite file


STEPS = {
    "id": "steps",
    "start": "a",
    "nodes": [
        {"id": "a", "type": "set", "variables": {"n": 1}, "next": "m1"},
        {"id": "m1", "type": "message", "text": "one for {{who}}", "next": "b"},
        {"id": "b", "type": "set", "expressions": {"n": "n + 1"}, "next": "m2"},
        {"id": "m2", "type": "message", "text": "{{n}} for {{who}}", "next": "c"},
        {
            "id": "c",
            "type": "condition",
            "branches": [{"when": "n == 2", "next": "m3"}],
            "default": "bye",
        },
        {"id": "m3", "type": "message", "text": "three for {{who}}", "next": "bye"},
        end_node("bye {{who}}"),
    ],
}
STEPS_NODES = ["a", "m1", "b", "m2", "c", "m3", "bye"]
NAPPING = {
    "id": "napping",
    "start": "m1",
    "nodes": [
        {"id": "m1", "type": "message", "text": "nap for {{who}}", "next": "nap"},
        {"id": "nap", "type": "delay", "seconds": 0.5, "next": "m2"},
        {"id": "m2", "type": "message", "text": "awake for {{who}}", "next": "bye"},
        end_node("bye {{who}}"),
    ],
}
NAPPING_NODES = ["m1", "nap", "nap", "m2", "bye"]


def expected_texts(flow_id: str, who: str) -> list[str]:
    if flow_id == "steps":
        return [f"one for {who}", f"2 for {who}", f"three for {who}", f"bye {who}"]
    return [f"nap for {who}", f"awake for {who}", f"bye {who}"]


class LeaseWatcher:
    """Samples which workers hold execution leases, to show both workers really raced."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.owners: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with sqlite3.connect(self.db, timeout=10) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT DISTINCT lease_owner FROM executions WHERE lease_owner IS NOT NULL"
                ).fetchall()
                self.owners.update(r[0] for r in rows)
                time.sleep(0.002)

    def __enter__(self) -> LeaseWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_two_workers_race_on_one_sqlite_file(cli: Any, tmp_path: Path) -> None:
    """500 executions, two `worker --until-idle` at once: each step and message exactly once."""
    db = tmp_path / "t.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path / "trilha.toml", engine="batch_size = 4")
    starts = [("napping" if i % 10 == 0 else "steps", {"who": f"c{i}"}) for i in range(500)]
    ids = create_executions(store, config, [STEPS, NAPPING], starts)

    rounds: list[set[str]] = []
    with LeaseWatcher(db) as watcher:
        for _ in range(3):  # `--until-idle` leaves future timers: go again once they are due
            workers = [
                cli.spawn("worker", "--store", store, "--config", config, "--until-idle")
                for _ in range(2)
            ]
            rounds.append(set())
            for proc in workers:
                _, stderr = proc.communicate(timeout=60)
                assert proc.returncode == 0, stderr
                assert "Traceback" not in stderr
                rounds[-1].add(stderr.split()[0])  # "worker-<id> on SQLiteStore(...)"
            waiting = query(db, "SELECT MAX(due_at) FROM executions WHERE status = 'waiting_delay'")
            if waiting[0][0] is None:
                break
            time.sleep(max(0.0, waiting[0][0] - time.time()) + 0.05)
    # both workers of the first round held leases: they really shared the work
    assert len(rounds[0]) == 2
    assert rounds[0] <= watcher.owners, (rounds[0], watcher.owners)

    statuses = dict(query(db, "SELECT id, status || '/' || outcome FROM executions"))
    assert len(statuses) == 500
    assert set(statuses.values()) == {"completed/completed"}, statuses

    assert (
        query(db, "SELECT execution_id, seq FROM checkpoints GROUP BY 1, 2 HAVING COUNT(*) > 1")
        == []
    )
    assert query(db, "SELECT idempotency_key FROM outbox GROUP BY 1 HAVING COUNT(*) > 1") == []
    assert query(db, "SELECT COUNT(*) FROM outbox WHERE status != 'sent' OR attempts != 1") == [
        (0,)
    ]
    assert query(db, "SELECT COUNT(*) FROM quarantine") == [(0,)]

    for execution_id, (flow_id, variables) in zip(ids, starts, strict=True):
        who = variables["who"]
        check_outbox(db, execution_id, expected_texts(flow_id, who))
        check_checkpoints(db, execution_id, STEPS_NODES if flow_id == "steps" else NAPPING_NODES)
        history = [
            {"from": r[0], "to": r[1]}
            for r in query(
                db,
                "SELECT source, target FROM transitions WHERE execution_id = ? ORDER BY id",
                execution_id,
            )
        ]
        check_history(history)
        assert history[-1]["to"] == "completed"
