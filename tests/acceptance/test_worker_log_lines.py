"""A real ``trilha worker``'s stdout: JSON lines in the DESIGN §5 shape at the level
asked for, the readable form on demand, a rotating file from ``[logging]``, and a
clear error for a level that does not exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_logs_cli import ANSWERS, IDENTITY, run_onboarding

TOP = {"timestamp", "level", "executionId", "message", "context"}


def waiting_execution(cli: Any, db: Path) -> str:
    """The onboarding example, asked its first question and answered by a stored
    reply that only a worker will apply."""
    execution_id = run_onboarding(cli, db)
    sent = cli("send", execution_id, ANSWERS[0], "--store", f"sqlite:///{db}", "--no-run")
    assert sent.returncode == 0, sent.stderr
    return execution_id


def parse(stdout: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    for line in lines:
        assert TOP <= set(line) <= TOP | {"nodeId", "nodeType"}, line
    return lines


def test_worker_prints_the_trail_as_json_lines(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "trilha.db"
    execution_id = waiting_execution(cli, db)
    (tmp_path / "trilha.toml").write_text('[channel]\nkind = "memory"\n', encoding="utf-8")
    result = cli("worker", "--store", f"sqlite:///{db}", "--until-idle")
    assert result.returncode == 0, result.stderr
    ours = [line for line in parse(result.stdout) if line["executionId"] == execution_id]
    messages = [line["message"] for line in ours]
    assert "message.received" in messages and "message.queued" in messages
    assert "node.entered" not in messages  # INFO by default
    assert ours[0]["context"]["institutionId"] == IDENTITY["institutionId"]

    debug_id = waiting_execution(cli, tmp_path / "second.db")
    result = cli(
        "worker", "--store", f"sqlite:///{tmp_path / 'second.db'}", "--until-idle",
        env={"TRILHA_LOG_LEVEL": "debug"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours = [line for line in parse(result.stdout) if line["executionId"] == debug_id]
    left = [line for line in ours if line["message"] == "node.left"]
    assert left and all("duration" in line["context"] for line in left)


def test_logging_section_writes_a_rotating_file(cli: Any, tmp_path: Path) -> None:
    db = tmp_path / "trilha.db"
    execution_id = waiting_execution(cli, db)
    (tmp_path / "trilha.toml").write_text(
        '[channel]\nkind = "memory"\n\n'
        '[logging]\nlevel = "warn"\nfile = "logs/trilha.log"\n'
        'institutions = { acme = "debug" }\n',
        encoding="utf-8",
    )
    result = cli("worker", "--store", f"sqlite:///{db}", "--until-idle")
    assert result.returncode == 0, result.stderr
    in_file = parse((tmp_path / "logs" / "trilha.log").read_text(encoding="utf-8"))
    assert any(
        line["executionId"] == execution_id and line["message"] == "node.entered"
        for line in in_file
    )  # the global level is WARN, but acme is watched at DEBUG


def test_an_unknown_level_is_refused(cli: Any, tmp_path: Path) -> None:
    result = cli("worker", "--until-idle", "--log-level", "chatty")
    assert result.returncode == 1
    assert "--log-level 'chatty'" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "trilha.toml").write_text('[logging]\nlevel = "loud"\n', encoding="utf-8")
    result = cli("worker", "--until-idle")
    assert result.returncode == 1
    assert "logging.level" in result.stderr and "Traceback" not in result.stderr
