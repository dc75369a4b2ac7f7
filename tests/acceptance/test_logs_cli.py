"""``trilha logs``: an execution's stored trail, from real processes over a real store."""

from __future__ import annotations

import json
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "onboarding.json"
ANSWERS = ["Ana Souza", "12345678909", "ana@example.com", "sim"]
TOP_KEYS = {"timestamp", "level", "executionId", "nodeId", "nodeType", "message", "context"}
REQUIRED_TOP = TOP_KEYS - {"nodeId", "nodeType"}
CONTEXT_KEYS = {"institutionId", "conversationId", "contactId", "duration", "error", "metadata"}
IDENTITY = {"institutionId": "acme", "conversationId": "conv-logs-1", "contactId": "contact-7"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONSOLE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR|CRITICAL) \S+ \S+")


def run_onboarding(cli: Any, db: Path, *answers: str) -> str:
    """Run the onboarding example with these replies; the execution's id."""
    args = [arg for answer in answers for arg in ("--input", answer)]
    result = cli(
        "run",
        ONBOARDING,
        "--store",
        f"sqlite:///{db}",
        "--institution",
        IDENTITY["institutionId"],
        "--conversation",
        IDENTITY["conversationId"],
        "--contact",
        IDENTITY["contactId"],
        "--json",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["executionId"])


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def stored_trail(db: Path, execution_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT level, message FROM execution_logs WHERE execution_id = ? ORDER BY id",
            (execution_id,),
        ).fetchall()
    return [(str(level), str(message)) for level, message in rows]


@pytest.fixture
def finished(cli: Any, tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "t.db"
    return db, run_onboarding(cli, db, *ANSWERS)


def test_json_lines_are_the_stored_trail_in_order_with_the_wire_shape(
    cli: Any, finished: tuple[Path, str]
) -> None:
    """--json prints one DESIGN §5 object per stored record, in the store's order."""
    db, ex_id = finished
    lines = json_lines(cli("logs", ex_id, "--store", f"sqlite:///{db}", "--json"))
    assert [(x["level"], x["message"]) for x in lines] == stored_trail(db, ex_id)
    for line in lines:
        assert REQUIRED_TOP <= set(line) <= TOP_KEYS, line
        assert line["executionId"] == ex_id
        assert ISO_MS.match(line["timestamp"]), line["timestamp"]
        assert set(IDENTITY) <= set(line["context"]) <= CONTEXT_KEYS, line
        assert {k: line["context"][k] for k in IDENTITY} == IDENTITY
    assert [x["timestamp"] for x in lines] == sorted(x["timestamp"] for x in lines)
    messages = [x["message"] for x in lines]
    assert messages[0] == "execution.started"
    assert lines[0]["context"]["metadata"] == {
        "flowId": "onboarding",
        "flowVersion": 1,
        "actor": "cli",
    }
    assert "execution.state_changed" in messages
    assert "execution.ended" in messages
    entered = [x for x in lines if x["message"] == "node.entered"]
    left = [x for x in lines if x["message"] == "node.left"]
    assert {x["level"] for x in entered + left} == {"DEBUG"}
    assert [x["nodeId"] for x in entered][:3] == ["welcome", "ask_name", "ask_name"]
    assert all(x["nodeType"] for x in entered)
    assert all(isinstance(x["context"]["duration"], int | float) for x in left)
    changes = [x["context"]["metadata"] for x in lines if x["message"] == "execution.state_changed"]
    assert changes[0]["from"] == "running" and changes[0]["to"] == "waiting_input"
    assert changes[-1]["to"] == "completed"


def test_level_info_drops_debug(cli: Any, finished: tuple[Path, str]) -> None:
    """--level INFO keeps every non-DEBUG line and no DEBUG one; WARNING is accepted."""
    db, ex_id = finished
    url = f"sqlite:///{db}"
    everything = json_lines(cli("logs", ex_id, "--store", url, "--json"))
    info = json_lines(cli("logs", ex_id, "--store", url, "--json", "--level", "info"))
    assert info == [x for x in everything if x["level"] != "DEBUG"]
    assert info and {x["level"] for x in info} == {"INFO"}
    assert json_lines(cli("logs", ex_id, "--store", url, "--json", "--level", "WARNING")) == []


def test_console_form_prints_one_readable_line_per_record(
    cli: Any, finished: tuple[Path, str]
) -> None:
    """Without --json each record is one 'HH:MM:SS.mmm LEVEL node message k=v' line."""
    db, ex_id = finished
    result = cli("logs", ex_id, "--store", f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert len(printed) == len(stored_trail(db, ex_id))
    for line in printed:
        assert CONSOLE.match(line), line
    assert "INFO  welcome execution.started actor=cli flowId=onboarding flowVersion=1" in printed[0]
    assert any(" DEBUG ask_name node.left duration=" in line for line in printed)


def test_follow_on_a_finished_execution_exits_by_itself(
    cli: Any, finished: tuple[Path, str]
) -> None:
    """--follow prints the whole trail and returns once the ended execution stays quiet."""
    db, ex_id = finished
    url = f"sqlite:///{db}"
    started = time.monotonic()
    followed = json_lines(cli("logs", ex_id, "--store", url, "--json", "--follow", timeout=20))
    assert time.monotonic() - started < 15
    assert followed == json_lines(cli("logs", ex_id, "--store", url, "--json"))


def test_unknown_execution_is_a_one_line_error(cli: Any, finished: tuple[Path, str]) -> None:
    """An id the store does not hold: exit 1, one line on stderr naming it, nothing on stdout."""
    db, _ = finished
    result = cli("logs", "no-such-id", "--store", f"sqlite:///{db}", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-id" in lines[0], result.stderr


def test_unknown_level_is_a_one_line_error(cli: Any, finished: tuple[Path, str]) -> None:
    """--level with a name that is no level: exit 1, one line listing the valid ones."""
    db, ex_id = finished
    result = cli("logs", ex_id, "--store", f"sqlite:///{db}", "--level", "loud")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DEBUG, INFO, WARN, ERROR, CRITICAL" in lines[0], result.stderr


def _reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str], message: str, timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not got or got[-1]["message"] != message:
        got.append(json.loads(lines.get(timeout=max(0.01, deadline - time.monotonic()))))
    return got


@pytest.mark.slow
def test_follow_prints_new_lines_as_they_come_and_stops_on_ctrl_c(cli: Any, tmp_path: Path) -> None:
    """--follow on a waiting execution prints what a later reply adds; Ctrl-C exits 0."""
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"
    ex_id = run_onboarding(cli, db)  # no replies: it waits at ask_name
    proc = cli.spawn("logs", ex_id, "--store", url, "--json", "--follow", "--level", "INFO")
    lines = _reader(proc)
    before = _read_until(lines, "execution.state_changed", timeout=15)
    assert before[0]["message"] == "execution.started"
    assert before[-1]["context"]["metadata"]["to"] == "waiting_input"
    sent = cli("send", ex_id, "Ana Souza", "--store", url)
    assert sent.returncode == 0, sent.stderr
    # the reply's turn begins by leaving waiting_input (the dispatcher's
    # message.delivered lines for the messages already queued may come first)
    after = _read_until(lines, "execution.state_changed", timeout=15)
    assert after[-1]["context"]["metadata"]["from"] == "waiting_input"
    after += _read_until(lines, "execution.state_changed", timeout=15)
    assert after[-1]["nodeId"] == "ask_cpf" and after[-1]["context"]["metadata"]["to"] == (
        "waiting_input"
    )
    assert proc.poll() is None  # still following: the execution has not ended
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
