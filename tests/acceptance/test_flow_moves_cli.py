"""``trilha migrate-executions`` as an operator meets it: a dry run that moves nothing,
then the move, after which the conversation goes on in the new version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_operator_cli import FLOW, ok, waiting_execution

#: the survey's question renamed, and its thanks changed
FLOW_V2 = (
    FLOW.replace("next: name}", "next: who}")
    .replace("{id: name,", "{id: who,")
    .replace('"thanks {{name}}"', '"v2 thanks {{name}}"')
)


def test_migrate_executions_moves_a_waiting_one(cli: Any, tmp_path: Path) -> None:
    """--dry-run counts it at its node with its counterpart; the move puts it on v2, where
    the contact's reply gets v2's thanks."""
    (tmp_path / "trilha.toml").write_text('[channel]\nkind = "memory"\n', encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'trilha.db'}"
    eid = waiting_execution(cli, tmp_path, store)
    (tmp_path / "survey.yaml").write_text(FLOW_V2, encoding="utf-8")
    newer = cli("run", tmp_path / "survey.yaml", "--store", store, "--conversation", "c2")
    assert newer.returncode == 0, newer.stderr  # publishes v2 (and runs one on it)
    command = ("migrate-executions", "survey", "--from", "1", "--to", "2", "--store", store)

    dry = json.loads(ok(cli(*command, "--map", "name=who", "--dry-run", "--json")))
    assert (dry["total"], dry["movable"], dry["dryRun"]) == (1, 1, True)
    assert dry["nodes"] == [
        {"nodeId": "name", "count": 1, "counterpart": "who", "missingVariables": []}
    ]

    moved = cli(*command, "--map", "name=who", "--actor", "ana", "--reason", "renamed")
    assert moved.returncode == 0, moved.stderr
    assert "1 of 1 execution(s) moved from v1 to v2; 0 skipped" in moved.stderr
    assert "moving" in moved.stderr  # the progress bar's task
    # the reply is read by v2's question and answered by v2's thanks: it moved
    assert "bot> v2 thanks Ana" in ok(cli("send", eid, "Ana", "--store", store))
