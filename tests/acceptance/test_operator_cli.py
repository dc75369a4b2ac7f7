"""The operator commands as an operator meets them: pause, resume, cancel, advance, sweep."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

#: YAML, as operators often write flows
FLOW = """\
id: survey
start: hello
nodes:
  - {id: hello, type: message, text: hi, next: name}
  - {id: name, type: question, text: "your name?", variable: name, next: bye}
  - {id: bye, type: message, text: "thanks {{name}}", next: done}
  - {id: done, type: end}
"""


@pytest.fixture
def store(tmp_path: Path) -> str:
    (tmp_path / "trilha.toml").write_text('[channel]\nkind = "memory"\n', encoding="utf-8")
    return f"sqlite:///{tmp_path / 'trilha.db'}"


def waiting_execution(cli: Any, tmp_path: Path, store: str, conversation: str = "c1") -> str:
    """Run the survey until it waits for the name; returns the execution id."""
    flow = tmp_path / "survey.yaml"
    flow.write_text(FLOW, encoding="utf-8")
    result = cli("run", flow, "--store", store, "--conversation", conversation, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "waiting_input"
    return str(data["executionId"])


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The command succeeded; its stdout."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 1 with exactly one line on stderr and no traceback; returns the line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    return line


def show(cli: Any, execution_id: str, store: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli("show", execution_id, "--store", store, "--json")))
    return data


def test_pause_keeps_a_reply_that_resume_applies(cli: Any, tmp_path: Path, store: str) -> None:
    """pause, a reply while paused (stored, not applied), resume applies it and runs the
    execution on; the history names who did what and why."""
    eid = waiting_execution(cli, tmp_path, store)
    out = ok(cli("pause", eid, "--store", store, "--actor", "ana", "--reason", "on the phone"))
    assert f"execution {eid}: paused at node 'name'" in out
    assert f"paused from waiting_input; continue with: trilha resume {eid}" in out
    sent = cli("send", eid, "Bia", "--store", store)
    assert sent.returncode == 0 and f"execution {eid}: paused" in sent.stderr
    data = show(cli, eid, store)
    assert data["status"] == "paused" and "name" not in data["variables"]
    assert (data["pausedFrom"], data["waitingFor"]) == ("waiting_input", "operator")
    text = ok(cli("show", eid, "--store", store))
    assert f"paused from  waiting_input; its wait is due at {data['dueAt']}" in text
    out = ok(cli("resume", eid, "--store", store, "--actor", "ana"))
    assert "bot> thanks Bia" in out
    assert f"execution {eid}: completed (outcome completed)" in out
    data = show(cli, eid, store)
    assert data["status"] == "completed" and data["variables"] == {"name": "Bia"}
    assert [t["text"] for t in data["transcript"]] == ["hi", "your name?", "Bia", "thanks Bia"]
    steps = [(h["from"], h["to"], h["actor"], h["reason"]) for h in data["history"]][2:4]
    assert steps == [
        ("waiting_input", "paused", "ana", "paused by an operator: on the phone"),
        ("paused", "waiting_input", "ana", "resumed by an operator"),
    ]


def test_cancel_with_the_default_actor(cli: Any, tmp_path: Path, store: str) -> None:
    """cancel ends the execution; without --actor the history names the CLI user."""
    eid = waiting_execution(cli, tmp_path, store)
    out = ok(cli("cancel", eid, "--store", store, "--reason", "duplicate"))
    assert f"execution {eid}: cancelled (outcome cancelled)" in out
    last = show(cli, eid, store)["history"][-1]
    assert (last["from"], last["to"]) == ("waiting_input", "cancelled")
    assert last["actor"].startswith("cli") and last["reason"].endswith(": duplicate")


def test_advance_to_a_node_and_to_next(cli: Any, tmp_path: Path, store: str) -> None:
    """advance --to moves to the named node (--no-run: a worker runs it); advance alone
    follows the node's next and runs it at once."""
    eid = waiting_execution(cli, tmp_path, store)
    out = ok(cli("advance", eid, "--to", "done", "--store", store, "--no-run"))
    assert f"execution {eid}: running at node 'done'" in out
    ok(cli("worker", "--until-idle", "--store", store))
    assert show(cli, eid, store)["status"] == "completed"

    other = waiting_execution(cli, tmp_path, store, "c2")
    out = ok(cli("advance", other, "--store", store, "--reason", "skip the question"))
    assert f"execution {other}: completed (outcome completed)" in out
    data = show(cli, other, store)
    assert data["status"] == "completed"
    assert [t["text"] for t in data["transcript"]] == ["hi", "your name?", "thanks "]
    assert data["history"][2]["reason"] == (
        "advanced by an operator from 'name' to 'bye': skip the question"
    )


def test_illegal_operations_are_one_line_errors(cli: Any, tmp_path: Path, store: str) -> None:
    """An operation the state does not allow exits 1 with one line naming the state."""
    eid = waiting_execution(cli, tmp_path, store)
    line = one_line_error(cli("resume", eid, "--store", store))
    assert line == f"error[illegal_transition]: cannot resume execution {eid}: it is waiting_input"
    ok(cli("cancel", eid, "--store", store))
    for command in ("pause", "resume", "cancel", "advance"):
        line = one_line_error(cli(command, eid, "--store", store))
        assert line.endswith(f"cannot {command} execution {eid}: it is cancelled"), line


def test_bad_targets_are_one_line_errors(cli: Any, tmp_path: Path, store: str) -> None:
    """An unknown node or execution is named in one line, and nothing changes."""
    eid = waiting_execution(cli, tmp_path, store)
    line = one_line_error(cli("advance", eid, "--to", "nowhere", "--store", store))
    assert "no node 'nowhere' in flow 'survey' v1" in line
    assert show(cli, eid, store)["status"] == "waiting_input"
    line = one_line_error(cli("pause", "nope", "--store", store))
    assert line == "error[execution_not_found]: no execution 'nope'"
    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    assert "no store at" in one_line_error(cli("pause", eid, "--store", missing))
    assert not (tmp_path / "typo.db").exists()


def test_sweep_moves_a_lost_wake_on(cli: Any, tmp_path: Path, store: str) -> None:
    """trilha sweep finds an execution whose queue entry was deleted by hand and prints it."""
    eid = waiting_execution(cli, tmp_path, store)
    ok(cli("send", eid, "Bia", "--no-run", "--store", store))
    with sqlite3.connect(tmp_path / "trilha.db") as conn:
        conn.execute("UPDATE executions SET wake_at = NULL WHERE id = ?", (eid,))
    result = cli("sweep", "--store", store)
    assert ok(result).splitlines() == [f"{eid}  waiting_input  no wake time: rescheduled"]
    assert "1 stuck execution moved on" in result.stderr
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [line["message"] for line in logged] == ["sweeper.rescheduled"]
    again = cli("sweep", "--store", store)
    assert ok(again) == "" and "0 stuck executions moved on" in again.stderr
    ok(cli("worker", "--until-idle", "--store", store))
    assert show(cli, eid, store)["variables"] == {"name": "Bia"}
