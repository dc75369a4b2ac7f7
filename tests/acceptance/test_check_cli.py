"""``trilha check`` as an operator runs it: real executions made by real ``trilha``
processes on a real SQLite file, then that file damaged with the ``sqlite3`` module
(each test on its own copy), and the check run as a process again.

The seed store, built once for the module, holds five executions: of the onboarding
example, one completed and two waiting for input (one of them moved on by ``trilha
send``, the other, of institution ``acme``, by a reply stored with ``--no-run`` and
applied by ``trilha worker --until-idle``); one failed through an ``http`` node whose
dependency listens on a closed local port; and one ended in ``timeout`` by the worker
when its reply did not come in time (its notice is the final step N + 1, with no
checkpoint of its own).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES, Cli

pytestmark = pytest.mark.slow

ONBOARDING = EXAMPLES / "onboarding.json"
ANSWERS = ["Ana Souza", "12345678909", "ana@example.com", "sim"]
BROKEN = {
    "id": "broken",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "call"},
        {
            "id": "call",
            "type": "http",
            "dependency": "crm",
            "method": "GET",
            "url": "/customer",
            "retry": {"maxAttempts": 1},
            "next": "bye",
        },
        {"id": "bye", "type": "end"},
    ],
}
#: a question whose reply is due within a second, with a notice when it is not given
IMPATIENT = {
    "id": "impatient",
    "start": "ask",
    "settings": {"inputTimeoutSeconds": 1, "timeoutMessage": "No reply: closing this chat."},
    "nodes": [
        {"id": "ask", "type": "question", "text": "Name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}
#: the check's exit code when an execution breaks a rule
VIOLATIONS = 3


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def run_json(cli: Cli, *args: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli("run", *args, "--json")).stdout)
    return data


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> int:
    """Run one statement on the file behind the store's back; the rows it changed."""
    with closing(sqlite3.connect(db)) as conn, conn:
        return conn.execute(statement, params).rowcount


def rows(db: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(query, params).fetchall()


@dataclass(frozen=True)
class Seed:
    db: Path
    completed: str
    asking: str  # waiting_input at ask_email (institution local)
    acme: str  # waiting_input at ask_cpf (institution acme)
    failed: str
    timed_out: str


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    tmp = tmp_path_factory.mktemp("check-seed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    cli = Cli(tmp, env)
    (tmp / "trilha.toml").write_text(
        '[channel]\nkind = "memory"\n'
        f'[dependencies.crm]\nbase_url = "http://127.0.0.1:{closed_port()}"\n',
        encoding="utf-8",
    )
    (tmp / "broken.json").write_text(json.dumps(BROKEN), encoding="utf-8")
    (tmp / "impatient.json").write_text(json.dumps(IMPATIENT), encoding="utf-8")
    db = tmp / "seed.db"
    store = url(db)
    inputs = [arg for answer in ANSWERS for arg in ("--input", answer)]

    done = run_json(cli, ONBOARDING, "--store", store, *inputs)
    assert done["status"] == "completed", done

    asking = run_json(cli, ONBOARDING, "--store", store, "--input", "Ana Souza")
    assert asking["status"] == "waiting_input", asking
    ok(cli("send", asking["executionId"], "12345678909", "--store", store))

    failed = run_json(cli, tmp / "broken.json", "--store", store)
    assert failed["status"] == "failed", failed

    impatient = run_json(cli, tmp / "impatient.json", "--store", store)
    assert impatient["status"] == "waiting_input", impatient
    acme = run_json(cli, ONBOARDING, "--store", store, "--institution", "acme")
    assert acme["status"] == "waiting_input", acme
    ok(cli("send", acme["executionId"], "Bia Lima", "--store", store, "--no-run"))
    time.sleep(1.2)  # the impatient question's reply is now overdue
    ok(cli("worker", "--store", store, "--until-idle", timeout=60))

    return Seed(
        db,
        done["executionId"],
        asking["executionId"],
        acme["executionId"],
        failed["executionId"],
        impatient["executionId"],
    )


@pytest.fixture
def db(seed: Seed, tmp_path: Path) -> Path:
    """This test's own copy of the seed store."""
    copy = tmp_path / "copy.db"
    with closing(sqlite3.connect(seed.db)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return copy


def check(cli: Cli, db: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli("check", "--store", db if isinstance(db, str) else url(db), *args)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def violations(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The violation lines of the readable output (everything but the summary)."""
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("checked "), result.stdout
    return lines[:-1]


def summary(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.splitlines()[-1]


def broken(cli: Cli, db: Path, execution_id: str, *expected: str) -> list[str]:
    """The check exits 3 and reports exactly ``expected`` (each a ``rule: detail`` start)
    for ``execution_id``, and nothing for any other execution."""
    result = check(cli, db)
    assert result.returncode == VIOLATIONS, (result.stdout, result.stderr)
    lines = violations(result)
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"error   {execution_id}  {start}"), (line, start)
    count = len(expected)
    assert summary(result) == f"checked 5 executions: {count} errors (1 executions), 0 warnings"
    return lines


# --------------------------------------------------------------------------- a sound store


def test_a_store_of_real_executions_checks_clean(cli: Cli, seed: Seed, db: Path) -> None:
    """Completed, waiting (after send, after worker) and failed executions: no finding."""
    statuses = dict(rows(db, "SELECT id, status FROM executions"))
    assert statuses == {
        seed.completed: "completed",
        seed.asking: "waiting_input",
        seed.acme: "waiting_input",
        seed.failed: "failed",
        seed.timed_out: "timeout",
    }
    # the timed-out one ended with its notice as step N + 1 (no checkpoint of its own)
    (step_seq,) = rows(db, "SELECT step_seq FROM executions WHERE id = ?", (seed.timed_out,))[0]
    (checkpoints,) = rows(
        db, "SELECT COUNT(*) FROM checkpoints WHERE execution_id = ?", (seed.timed_out,)
    )[0]
    assert step_seq == checkpoints + 1
    final = f"{seed.timed_out}:{step_seq}:end"
    assert rows(db, "SELECT step_seq FROM outbox WHERE idempotency_key = ?", (final,)) == [
        (step_seq,)
    ]
    # the acme reply was applied by the worker
    assert [
        r[0] is not None
        for r in rows(db, "SELECT applied_at FROM inbox WHERE execution_id = ?", (seed.acme,))
    ] == [True]

    result = check(cli, db)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert violations(result) == []
    assert summary(result) == "checked 5 executions: 0 errors (0 executions), 0 warnings"

    as_json = check(cli, db, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "checked": 5,
        "errors": 0,
        "warnings": 0,
        "violations": [],
    }


def test_check_only_reads_the_store(cli: Cli, db: Path) -> None:
    before = rows(db, "SELECT * FROM executions ORDER BY id")
    logs = rows(db, "SELECT COUNT(*) FROM execution_logs")
    check(cli, db)
    assert rows(db, "SELECT * FROM executions ORDER BY id") == before
    assert rows(db, "SELECT COUNT(*) FROM execution_logs") == logs


# --------------------------------------------------------------------------- damage


def test_a_deleted_transition_breaks_the_history(cli: Cli, seed: Seed, db: Path) -> None:
    changed = sql(
        db,
        "DELETE FROM transitions WHERE id = (SELECT MIN(id) FROM transitions"
        " WHERE execution_id = ? AND source = 'waiting_input')",
        (seed.completed,),
    )
    assert changed == 1
    broken(
        cli,
        db,
        seed.completed,
        "history: a change from running follows one that ended in waiting_input",
    )


def test_a_status_changed_without_its_checksum_is_a_corrupted_row(
    cli: Cli, seed: Seed, db: Path
) -> None:
    """The row cannot be read, but the walk still finds it by id and reports it."""
    assert sql(db, "UPDATE executions SET status = 'running' WHERE id = ?", (seed.asking,)) == 1
    (line,) = broken(cli, db, seed.asking, "row: the row fails its own checks")
    assert "checksum mismatch" in line

    data = json.loads(check(cli, db, "--json").stdout)
    assert data["checked"] == 5
    assert data["violations"] == [
        {
            "executionId": seed.asking,
            "rule": "row",
            "severity": "error",
            "detail": f"the row fails its own checks: execution {seed.asking}: checksum mismatch",
        }
    ]


def test_a_lost_outbox_row_the_trail_mentions(cli: Cli, seed: Seed, db: Path) -> None:
    key = f"{seed.completed}:1:0"
    assert sql(db, "DELETE FROM outbox WHERE idempotency_key = ?", (key,)) == 1
    broken(cli, db, seed.completed, f"outbox: message {key} was sent by a step but is missing")


def test_an_outbox_row_of_a_step_never_committed(cli: Cli, seed: Seed, db: Path) -> None:
    key = f"{seed.asking}:99:0"
    sql(
        db,
        "INSERT INTO outbox (idempotency_key, execution_id, institution_id, conversation_id,"
        " contact_id, channel, text, step_seq, created_at)"
        " SELECT ?, id, institution_id, conversation_id, contact_id, channel, 'spam', 99, ?"
        " FROM executions WHERE id = ?",
        (key, time.time(), seed.asking),
    )
    broken(
        cli,
        db,
        seed.asking,
        f"outbox: message {key} belongs to step 99, never committed",
        f"outbox: message {key} is in the outbox but no step sent it",
    )


def test_a_waiting_execution_with_nothing_to_wake_it(cli: Cli, seed: Seed, db: Path) -> None:
    """wake_at is not covered by the row's checksum: the row stays readable, and the
    check says why it is stuck."""
    assert sql(db, "UPDATE executions SET wake_at = NULL WHERE id = ?", (seed.asking,)) == 1
    (line,) = broken(
        cli, db, seed.asking, "state: waiting_input with nothing to wake it (no wake time)"
    )
    assert "row:" not in line


def test_a_reply_marked_applied_that_no_step_read(cli: Cli, seed: Seed, db: Path) -> None:
    """A reply stored for later (``send --no-run``) is sound while pending; marked
    applied behind the engine's back it is reported."""
    ok(cli("send", seed.asking, "later", "--store", url(db), "--no-run", "--message-id", "late-1"))
    pending = check(cli, db)
    assert pending.returncode == 0, pending.stdout
    assert violations(pending) == []

    assert (
        sql(
            db,
            "UPDATE inbox SET applied_at = ?, applied_step = 3 WHERE message_id = 'late-1'",
            (time.time(),),
        )
        == 1
    )
    broken(cli, db, seed.asking, "inbox: message late-1 is marked applied but no step read it")


def test_a_pending_reply_to_an_execution_not_due_is_stranded(
    cli: Cli, seed: Seed, db: Path
) -> None:
    ok(cli("send", seed.asking, "later", "--store", url(db), "--no-run", "--message-id", "late-2"))
    sql(db, "UPDATE executions SET wake_at = due_at WHERE id = ?", (seed.asking,))
    broken(
        cli,
        db,
        seed.asking,
        "inbox: message late-2 waits to be applied but the execution is not due:"
        " the reply is stranded",
    )


def test_overdue_work_is_a_warning_and_exits_0(cli: Cli, seed: Seed, db: Path) -> None:
    sql(db, "UPDATE executions SET wake_at = ? WHERE id = ?", (time.time() - 3600, seed.asking))
    result = check(cli, db)
    assert result.returncode == 0, result.stdout
    (line,) = violations(result)
    assert re.fullmatch(
        rf"warning {seed.asking}  overdue: due 36\d\d s ago and no worker holds it", line
    ), line
    assert summary(result) == "checked 5 executions: 0 errors (0 executions), 1 warnings"

    data = json.loads(check(cli, db, "--json").stdout)
    assert (data["errors"], data["warnings"]) == (0, 1)
    assert [(v["executionId"], v["rule"], v["severity"]) for v in data["violations"]] == [
        (seed.asking, "overdue", "warning")
    ]

    patient = check(cli, db, "--grace", "7200")
    assert patient.returncode == 0
    assert violations(patient) == []
    assert summary(patient) == "checked 5 executions: 0 errors (0 executions), 0 warnings"


def test_sweep_repairs_what_check_reports(cli: Cli, seed: Seed, db: Path) -> None:
    """A lost wake time is reported; ``trilha sweep`` reschedules it and the check passes."""
    sql(db, "UPDATE executions SET wake_at = NULL WHERE id = ?", (seed.asking,))
    broken(cli, db, seed.asking, "state: waiting_input with nothing to wake it")
    ok(cli("sweep", "--store", url(db)))
    result = check(cli, db)
    assert result.returncode == 0, result.stdout
    assert summary(result) == "checked 5 executions: 0 errors (0 executions), 0 warnings"


# --------------------------------------------------------------------------- output and scope


def test_json_output_shape(cli: Cli, seed: Seed, db: Path) -> None:
    key = f"{seed.completed}:1:0"
    sql(db, "DELETE FROM outbox WHERE idempotency_key = ?", (key,))
    sql(db, "UPDATE executions SET wake_at = NULL WHERE id = ?", (seed.acme,))
    result = check(cli, db, "--json")
    assert result.returncode == VIOLATIONS, result.stderr
    data = json.loads(result.stdout)  # the whole stdout is one JSON document
    assert set(data) == {"checked", "errors", "warnings", "violations"}
    assert (data["checked"], data["errors"], data["warnings"]) == (5, 2, 0)
    for v in data["violations"]:
        assert set(v) == {"executionId", "rule", "severity", "detail"}
    assert sorted((v["executionId"], v["rule"], v["detail"]) for v in data["violations"]) == sorted(
        [
            (seed.completed, "outbox", f"message {key} was sent by a step but is missing"),
            (seed.acme, "state", "waiting_input with nothing to wake it (no wake time)"),
        ]
    )


def test_institution_narrows_the_check(cli: Cli, seed: Seed, db: Path) -> None:
    sql(db, "UPDATE executions SET wake_at = NULL WHERE id = ?", (seed.asking,))  # local

    acme = check(cli, db, "--institution", "acme")
    assert acme.returncode == 0, acme.stdout
    assert violations(acme) == []
    assert summary(acme) == "checked 1 executions: 0 errors (0 executions), 0 warnings"

    local = check(cli, db, "--institution", "local")
    assert local.returncode == VIOLATIONS, local.stdout
    (line,) = violations(local)
    assert line.startswith(f"error   {seed.asking}  state: ")
    assert summary(local) == "checked 4 executions: 1 errors (1 executions), 0 warnings"

    nobody = json.loads(check(cli, db, "--institution", "nobody", "--json").stdout)
    assert nobody == {"checked": 0, "errors": 0, "warnings": 0, "violations": []}


def test_a_store_that_does_not_exist_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = check(cli, url(missing))
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    assert str(missing) in result.stderr
    assert "store" in result.stderr
    assert result.stdout == ""
    assert not missing.exists()


# --------------------------------------------------------------------------- known gaps


def test_institution_still_reports_its_corrupted_rows(cli: Cli, seed: Seed, db: Path) -> None:
    sql(db, "UPDATE executions SET status = 'running' WHERE id = ?", (seed.acme,))
    result = check(cli, db, "--institution", "acme")
    assert result.returncode == VIOLATIONS, result.stdout
    (line,) = violations(result)
    assert line.startswith(f"error   {seed.acme}  row: ")


def test_an_unreadable_transition_is_reported_not_a_crash(cli: Cli, seed: Seed, db: Path) -> None:
    sql(
        db,
        "UPDATE transitions SET target = 'exploded' WHERE id = (SELECT MAX(id) FROM transitions"
        " WHERE execution_id = ?)",
        (seed.completed,),
    )
    result = cli("check", "--store", url(db))
    assert "Traceback" not in result.stderr
    assert result.returncode == VIOLATIONS, result.stderr
    assert any(line.startswith(f"error   {seed.completed}  ") for line in violations(result))
    assert summary(result).startswith("checked 5 executions:")


def test_sweep_of_a_wait_past_its_due_time_passes_the_check(cli: Cli, seed: Seed, db: Path) -> None:
    """due_at is not covered by the checksum either: the row stays readable."""
    sql(
        db,
        "UPDATE executions SET wake_at = NULL, due_at = ? WHERE id = ?",
        (time.time() - 10, seed.asking),
    )
    broken(cli, db, seed.asking, "state: waiting_input with nothing to wake it")
    ok(cli("sweep", "--store", url(db)))  # wake_at = now: due, the next claim times it out
    result = check(cli, db)
    assert result.returncode == 0, result.stdout
