"""``trilha forget`` as an operator meets it: a contact waiting for its reply is
cancelled and erased, the receipt printed (as JSON with ``--json``); another contact
stays; ``--retention`` with no ``[retention]`` says retention is off."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

FLOW = """\
id: cpf
start: ask
nodes:
  - {id: ask, type: question, text: "Seu CPF?", variable: cpf, next: done}
  - {id: done, type: end}
"""


def _waiting(cli: Any, tmp_path: Path, store: str, contact: str) -> str:
    flow = tmp_path / "cpf.yaml"
    flow.write_text(FLOW, encoding="utf-8")
    result = cli(
        "run", flow, "--store", store, "--institution", "acme", "--contact", contact, "--json"
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["executionId"])


def test_forget_erases_a_contact_and_prints_the_receipt(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "trilha.toml").write_text('[channel]\nkind = "memory"\n', encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'trilha.db'}"
    erased = _waiting(cli, tmp_path, store, "5511987654321")
    kept = _waiting(cli, tmp_path, store, "5521912345678")

    result = cli(
        "forget", "--contact", "5511987654321", "--institution", "acme", "--store", store, "--json"
    )
    assert result.returncode == 0, result.stderr
    receipt = json.loads(result.stdout)
    assert (receipt["contactId"], receipt["institutionId"]) == ("5511987654321", "acme")
    assert receipt["cancelled"] == 1 and receipt["removed"]["executions"] == 1
    assert receipt["removed"]["outbox"] == 1  # the question
    with sqlite3.connect(tmp_path / "trilha.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM executions")]
        audit = conn.execute("SELECT kind, actor, removed FROM erasures").fetchall()
    assert ids == [kept] and erased not in ids
    assert len(audit) == 1 and audit[0][0] == "contact" and audit[0][1].startswith("cli")
    assert "5511987654321" not in json.dumps(audit)

    retention = cli("forget", "--retention", "--store", store)
    assert retention.returncode == 1 and "retention is off" in retention.stderr
