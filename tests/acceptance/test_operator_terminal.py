"""Operators' terminals are safe: a contact's text (and a flow's) is printed by every
command with its control characters escaped and its rich markup literal (finding 15)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import Cli

#: what a contact types: an OSC 52 clipboard write, a screen clear, a C1 CSI (0x9b),
#: rich markup and a link, a bidi override, and a newline that forges a line of its own
EVIL = (
    "Ana\x1b]52;c;aGk=\x07 \x1b[2J \x9b31m [red]x[/red] [link=http://evil.test]y[/link]"
    " \u202eevil\nFORGED 12:00:00.000 ERROR"
)
#: a flow an institution wrote: echoes the answer, and hands off to a queue whose name
#: carries a control sequence (it ends up in the state history's reason)
FLOW = {
    "id": "echo",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Your name?", "variable": "name", "next": "say"},
        {"id": "say", "type": "message", "text": "Hello {{name}}", "next": "desk"},
        {"id": "desk", "type": "handoff", "queue": "desk\x1b[8mhidden", "reason": "{{name}}"},
    ],
}
#: a character a terminal obeys or that disguises text; newlines are the display's own
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def assert_shown_not_obeyed(output: str, *, lines_kept: bool = True) -> None:
    """No raw control character; the contact's text is there, escaped and literal; and
    (unless a multi-line message is meant to print as such) no line is forged."""
    assert not UNSAFE.search(output), [m.group() for m in UNSAFE.finditer(output)]
    assert "52;c;aGk=" in output and "[2J" in output  # shown, not dropped
    assert "[red]x[/red]" in output and "[link=http://evil.test]y[/link]" in output
    assert "\\u202e" in output
    assert "\\x9b31m" in output or "\\u009b31m" in output
    if lines_kept:
        assert not [line for line in output.splitlines() if line.lstrip().startswith("FORGED")]


def write_flow(tmp_path: Path) -> Path:
    path = tmp_path / "echo.json"
    path.write_text(json.dumps(FLOW), encoding="utf-8")
    return path


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_show_logs_and_run_print_a_contacts_escape_sequences_escaped(
    cli: Cli, tmp_path: Path
) -> None:
    """`run`, `show` and `logs` (text and JSON) print stored control characters escaped."""
    store = f"sqlite:///{tmp_path / 't.db'}"
    ran = ok(cli("run", write_flow(tmp_path), "--store", store, "--input", EVIL, "--json"))
    execution_id = json.loads(ran.stdout)["executionId"]

    chat = ok(cli("run", write_flow(tmp_path), "--store", store, "--input", EVIL))
    # the bot's message is printed as a chat message: its own lines stay lines
    assert_shown_not_obeyed(chat.stdout + chat.stderr, lines_kept=False)
    assert "you> Ana\\x1b]52;c;aGk=\\x07" in chat.stdout

    shown = ok(cli("show", execution_id, "--store", store))
    assert_shown_not_obeyed(shown.stdout)
    assert "contact> Ana\\x1b]52;c;aGk=\\x07 \\x1b[2J \\x9b31m [red]x[/red]" in shown.stdout
    assert "\\nFORGED" in shown.stdout
    assert "desk\\x1b[8mhidden" in shown.stdout  # the flow's queue, in the state history

    trail = ok(cli("logs", execution_id, "--store", store))
    assert_shown_not_obeyed(trail.stdout)
    assert "message.received" in trail.stdout

    as_json = ok(cli("show", execution_id, "--store", store, "--json")).stdout
    assert not UNSAFE.search(as_json)  # \u-escaped, and still exact JSON
    assert json.loads(as_json)["variables"] == {"name": EVIL}
    trail_json = ok(cli("logs", execution_id, "--store", store, "--json")).stdout
    assert not UNSAFE.search(trail_json)
    texts = [
        json.loads(x)["context"].get("metadata", {}).get("text")
        for x in trail_json.split("\n")[:-1]
    ]
    assert EVIL in texts


def test_worker_process_log_and_chat_print_a_reply_escaped(cli: Cli, tmp_path: Path) -> None:
    """A worker's console log lines and its terminal channel print a reply escaped."""
    store = f"sqlite:///{tmp_path / 't.db'}"
    ran = ok(cli("run", write_flow(tmp_path), "--store", store, "--json"))
    execution_id = json.loads(ran.stdout)["executionId"]
    ok(cli("send", execution_id, EVIL, "--store", store, "--no-run"))
    config = tmp_path / "console.toml"
    config.write_text('[logging]\nformat = "console"\n[channel]\nkind = "terminal"\n')
    worked = ok(
        cli("worker", "--until-idle", "--store", store, "--config", config, "--log-level", "DEBUG")
    )
    log_lines = [line for line in worked.stdout.splitlines() if "message.received" in line]
    assert len(log_lines) == 1
    assert_shown_not_obeyed(log_lines[0])
    assert not UNSAFE.search(worked.stdout + worked.stderr)
    assert "bot> Hello Ana\\x1b]52;c;aGk=\\x07" in worked.stdout


def test_tables_and_errors_print_stored_text_escaped(cli: Cli, tmp_path: Path) -> None:
    """`keys list` (a table) and an error line print stored text escaped and literal."""
    store = f"sqlite:///{tmp_path / 't.db'}"
    ok(cli("keys", "create", "--institution", "acme", "--name", EVIL, "--store", store))
    listed = ok(cli("keys", "list", "--store", store))
    assert not UNSAFE.search(listed.stdout)
    assert "Ana\\x1b]52;c;aGk=\\x07" in listed.stdout and "\\u202eevil" in listed.stdout
    assert json.loads(ok(cli("keys", "list", "--store", store, "--json")).stdout)[0]["name"] == EVIL

    failed = cli("show", "--conversation", EVIL, "--store", store)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert not UNSAFE.search(failed.stderr)
    assert len(failed.stderr.strip().splitlines()) == 1  # one error line, none forged
