"""The ``trilha`` command as a user meets it: real processes, real files, real exit codes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ONBOARDING = ROOT / "examples" / "onboarding.json"
NODE_TYPES = {
    "ai",
    "message",
    "question",
    "condition",
    "set",
    "delay",
    "wait_until_open",
    "jump",
    "subflow",
    "handoff",
    "end",
    "http",
    "wait_event",
}
ANSWERS = ["Ana Souza", "12345678909", "ana@example.com", "sim"]
WELCOME = "Olá! Welcome to Banco Trilha. Let's open your account."
ASK_NAME = "What is your full name?"
ASK_CPF = "Thanks, Ana Souza. What is your CPF (11 digits)?"
ASK_EMAIL = "And your e-mail?"
CONFIRM = "Is this right? Ana Souza, CPF 12345678909, ana@example.com. (yes/no)"
BYE = "Welcome aboard, Ana Souza! Your account request is on its way."


def write_flow(path: Path, flow: dict[str, Any] | str) -> Path:
    path.write_text(flow if isinstance(flow, str) else json.dumps(flow), encoding="utf-8")
    return path


def assert_clean_error(
    result: subprocess.CompletedProcess[str], *expected: str, causes: bool = False
) -> str:
    """Exit 1 and one line on stderr naming the problem (then, if ``causes``, only its
    `caused by` chain), no traceback; returns the line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines, result.stderr
    extra = lines[1:]
    assert len(extra) == 0 or (causes and all(x.startswith("  caused by ") for x in extra)), (
        result.stderr
    )
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def store_url(path: Path) -> str:
    return f"sqlite:///{path}"


def run_json(cli: Any, *args: str | Path, **kwargs: Any) -> dict[str, Any]:
    result = cli("run", *args, "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def inputs(*answers: str) -> list[str]:
    return [arg for answer in answers for arg in ("--input", answer)]


def chain(flow_id: str, count: int) -> dict[str, Any]:
    """A valid flow of ``count`` nodes: messages in a line, then an end."""
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "type": "message", "text": f"step {i}", "next": f"n{i + 1}"}
        for i in range(count - 1)
    ]
    nodes.append({"id": f"n{count - 1}", "type": "end"})
    return {"id": flow_id, "start": "n0", "nodes": nodes}


# ---------------------------------------------------------------------------------- validate


def test_validate_accepts_the_onboarding_example(cli: Any) -> None:
    """A valid flow exits 0, prints no problem and says ok on stderr."""
    result = cli("validate", ONBOARDING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "flow 'onboarding' v1, 9 nodes" in result.stderr


def test_validate_reports_a_dangling_next_in_the_exact_form(cli: Any, tmp_path: Path) -> None:
    """A next naming no node is one line `FILE: nodes[3].next: no node 'pay' in flow 'checkout'`."""
    write_flow(
        tmp_path / "checkout.json",
        {
            "id": "checkout",
            "start": "hello",
            "nodes": [
                {"id": "hello", "type": "message", "text": "Hi!", "next": "cart"},
                {"id": "cart", "type": "set", "variables": {"total": 120}, "next": "route"},
                {
                    "id": "route",
                    "type": "condition",
                    "branches": [{"when": "total > 1000", "next": "done"}],
                    "default": "charge",
                },
                {"id": "charge", "type": "message", "text": "Paying {{total}}", "next": "pay"},
                {"id": "done", "type": "end"},
            ],
        },
    )
    result = cli("validate", "checkout.json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "checkout.json: nodes[3].next: no node 'pay' in flow 'checkout'"
    ]
    assert "Traceback" not in result.stderr


def test_validate_reports_duplicate_node_ids(cli: Any, tmp_path: Path) -> None:
    """Two nodes with one id are an error naming both positions."""
    flow = chain("dup", 3)
    flow["nodes"].insert(2, {"id": "n0", "type": "message", "text": "again", "next": "n2"})
    write_flow(tmp_path / "dup.json", flow)
    result = cli("validate", "dup.json")
    assert result.returncode == 1
    assert "dup.json: nodes[2].id: duplicate node id 'n0' (first at nodes[0])" in (
        result.stdout.splitlines()
    )


def test_validate_reports_an_unknown_node_type(cli: Any, tmp_path: Path) -> None:
    """An unregistered node type is an error that lists the known types."""
    flow = chain("sms", 3)
    flow["nodes"][1] = {"id": "n1", "type": "sms", "text": "hi", "next": "n2"}
    write_flow(tmp_path / "sms.json", flow)
    result = cli("validate", "sms.json")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("sms.json: nodes[1].type: unknown node type 'sms'") for line in lines
    )
    assert all(t in result.stdout for t in NODE_TYPES)


def test_validate_reports_a_missing_start(cli: Any, tmp_path: Path) -> None:
    """A flow without `start` is an error on the `start` path."""
    flow = chain("nostart", 2)
    del flow["start"]
    write_flow(tmp_path / "nostart.json", flow)
    result = cli("validate", "nostart.json")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "nostart.json: start: missing: a flow must name its start node"
    ]


def test_validate_warns_about_an_unreachable_node_and_passes(cli: Any, tmp_path: Path) -> None:
    """An unreachable node is a warning: printed, yet the exit code is 0."""
    flow = chain("orphan", 2)
    flow["nodes"].append({"id": "lost", "type": "end"})
    write_flow(tmp_path / "orphan.json", flow)
    result = cli("validate", "orphan.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "orphan.json: nodes[2]: warning: node 'lost' is unreachable from start 'n0'"
    ]
    assert "(1 warning)" in result.stderr


def test_validate_refuses_a_file_over_one_mib(cli: Any, tmp_path: Path) -> None:
    """A file of exactly 1 MiB is read; one byte more is refused with the limit named."""
    body = json.dumps(chain("big", 2))
    limit = 1_048_576
    write_flow(tmp_path / "edge.json", body + " " * (limit - len(body.encode())))
    write_flow(tmp_path / "big.json", body + " " * (limit + 1 - len(body.encode())))
    assert (tmp_path / "edge.json").stat().st_size == limit
    assert cli("validate", "edge.json").returncode == 0
    result = cli("validate", "big.json")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"big.json: flow is {limit + 1} bytes; the limit is {limit} (1 MiB)"
    ]


def test_validate_refuses_more_than_5000_nodes(cli: Any, tmp_path: Path) -> None:
    """5,000 nodes pass; 5,001 are refused with one clear line."""
    write_flow(tmp_path / "ok.json", chain("many", 5_000))
    write_flow(tmp_path / "huge.json", chain("many", 5_001))
    assert cli("validate", "ok.json").returncode == 0
    result = cli("validate", "huge.json")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "huge.json: nodes: flow has 5001 nodes; the limit is 5000"
    ]


def test_validate_checks_every_file_of_a_folder(cli: Any, tmp_path: Path) -> None:
    """A folder is validated file by file; one bad file makes the exit code 1."""
    folder = tmp_path / "flows"
    folder.mkdir()
    write_flow(folder / "a.json", chain("a", 2))
    write_flow(folder / "b.json", "{not json")
    (folder / "notes.txt").write_text("not a flow")
    result = cli("validate", "flows")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{Path('flows') / 'b.json'}: not valid JSON")
    assert "flow 'a' v1, 2 nodes" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------ schema


def test_schema_is_json_listing_every_node_type(cli: Any) -> None:
    """`trilha schema` prints a JSON Schema whose nodes are the built-in node types."""
    result = cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert "start" in schema["required"]
    mapping = schema["properties"]["nodes"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == NODE_TYPES
    assert schema["properties"]["nodes"]["maxItems"] == 5_000


# --------------------------------------------------------------------------------------- run


def test_run_json_completes_the_onboarding(cli: Any, tmp_path: Path) -> None:
    """A scripted run prints the documented JSON: id, status, outcome, variables, transcript."""
    data = run_json(cli, ONBOARDING, "--store", store_url(tmp_path / "t.db"), *inputs(*ANSWERS))
    assert set(data) == {"executionId", "status", "outcome", "variables", "transcript"}
    assert len(data["executionId"]) >= 8
    assert data["status"] == "completed"
    assert data["outcome"] == "completed"
    assert data["variables"] == {
        "contact": {"name": "Ana Souza"},
        "cpf": "12345678909",
        "email": "ana@example.com",
        "confirmed": "yes",
        "onboarded": True,
        "greeting": "Welcome aboard, Ana Souza!",
    }
    assert [(t["from"], t["text"]) for t in data["transcript"]] == [
        ("bot", WELCOME),
        ("bot", ASK_NAME),
        ("contact", "Ana Souza"),
        ("bot", ASK_CPF),
        ("contact", "12345678909"),
        ("bot", ASK_EMAIL),
        ("contact", "ana@example.com"),
        ("bot", CONFIRM),
        ("contact", "sim"),
        ("bot", BYE),
    ]
    assert all(t["at"].endswith("Z") for t in data["transcript"])


def test_run_parses_var_values_as_json(cli: Any, tmp_path: Path) -> None:
    """`--var KEY=VALUE` starts the execution with JSON-parsed (or plain string) values."""
    data = run_json(
        cli,
        ONBOARDING,
        "--store",
        store_url(tmp_path / "t.db"),
        "--var",
        "plan=3",
        "--var",
        'tags=["a", "b"]',
        "--var",
        "who=bob",
        "--var",
        "deep.er=true",
    )
    assert data["status"] == "waiting_input"
    assert data["variables"] == {"plan": 3, "tags": ["a", "b"], "who": "bob", "deep": {"er": True}}


def test_run_waits_for_input_then_send_and_show_carry_on(cli: Any, tmp_path: Path) -> None:
    """Too few inputs leave `waiting_input`; `send` moves it on; `show` reads it back."""
    store = store_url(tmp_path / "t.db")
    data = run_json(
        cli, ONBOARDING, "--store", store, "--conversation", "conv-42", *inputs("Ana Souza")
    )
    assert data["status"] == "waiting_input"
    assert data["outcome"] is None
    last = data["transcript"][-1]
    assert (last["from"], last["text"]) == ("bot", ASK_CPF)
    execution_id = data["executionId"]

    sent = cli("send", execution_id, "12345678909", "--store", store)
    assert sent.returncode == 0, sent.stderr
    assert f"bot> {ASK_EMAIL}" in sent.stdout
    assert f"execution {execution_id}: waiting_input at node 'ask_email'" in sent.stderr

    for answer in ANSWERS[2:]:
        assert cli("send", execution_id, answer, "--store", store).returncode == 0

    shown = cli("show", execution_id, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    ex = json.loads(shown.stdout)
    assert ex["executionId"] == execution_id
    assert ex["conversationId"] == "conv-42"
    assert ex["flowId"] == "onboarding"
    assert ex["flowVersion"] == 1
    assert ex["status"] == "completed"
    assert ex["outcome"] == "completed"
    assert ex["waitingFor"] is None
    assert ex["variables"]["onboarded"] is True
    assert [t["text"] for t in ex["transcript"] if t["from"] == "bot"] == [
        WELCOME,
        ASK_NAME,
        ASK_CPF,
        ASK_EMAIL,
        CONFIRM,
        BYE,
    ]
    assert [t["text"] for t in ex["transcript"] if t["from"] == "contact"] == ANSWERS
    assert ex["history"][0]["from"] is None
    assert ex["history"][-1]["to"] == "completed"
    # welcome, four questions asked and answered, check, mark_done, bye
    assert ex["steps"] == 1 + 4 * 2 + 3

    by_conversation = cli("show", "--conversation", "conv-42", "--store", store)
    assert by_conversation.returncode == 0, by_conversation.stderr
    assert execution_id in by_conversation.stdout
    assert "completed" in by_conversation.stdout
    assert BYE in by_conversation.stdout
    assert "state history" in by_conversation.stdout


def test_default_store_is_trilha_db_in_the_current_folder(cli: Any, tmp_path: Path) -> None:
    """Without --store or TRILHA_STORE the store is ./trilha.db of the working folder."""
    data = run_json(cli, ONBOARDING, *inputs("Ana Souza"))
    assert (tmp_path / "trilha.db").is_file()
    rows = sqlite3.connect(tmp_path / "trilha.db").execute("SELECT id FROM executions").fetchall()
    assert rows == [(data["executionId"],)]
    shown = cli("show", data["executionId"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "waiting_input"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli("show", data["executionId"], cwd=elsewhere).returncode == 1


def test_trilha_store_environment_variable_is_honoured(cli: Any, tmp_path: Path) -> None:
    """TRILHA_STORE names the store when --store is absent; --store beats it."""
    env_db = tmp_path / "from-env.db"
    env = {"TRILHA_STORE": store_url(env_db)}
    data = run_json(cli, ONBOARDING, *inputs("Ana Souza"), env=env)
    assert env_db.is_file()
    assert not (tmp_path / "trilha.db").exists()
    shown = cli("show", data["executionId"], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["executionId"] == data["executionId"]

    flag_db = tmp_path / "from-flag.db"
    other = run_json(cli, ONBOARDING, "--store", store_url(flag_db), env=env)
    assert flag_db.is_file()
    assert cli("show", other["executionId"], "--json", env=env).returncode == 1
    assert cli("show", other["executionId"], "--store", store_url(flag_db), env=env).returncode == 0


# ------------------------------------------------------------------------------------ worker


@pytest.mark.slow
def test_worker_until_idle_exits_once_nothing_is_due(cli: Any, tmp_path: Path) -> None:
    """`worker --until-idle` applies a stored reply, then exits while the flow waits again."""
    store = store_url(tmp_path / "t.db")
    (tmp_path / "trilha.toml").write_text('[channel]\nkind = "memory"\n')
    data = run_json(cli, ONBOARDING, "--store", store, *inputs("Ana Souza"))
    execution_id = data["executionId"]
    stored = cli("send", execution_id, "12345678909", "--store", store, "--no-run")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout == ""  # nothing ran: no bot message yet

    started = time.monotonic()
    worker = cli("worker", "--store", store, "--until-idle", timeout=20)
    assert worker.returncode == 0, worker.stderr
    assert time.monotonic() - started < 10
    assert "Traceback" not in worker.stderr

    ex = json.loads(cli("show", execution_id, "--store", store, "--json").stdout)
    assert ex["status"] == "waiting_input"
    assert ex["currentNodeId"] == "ask_email"
    assert ex["transcript"][-1]["text"] == ASK_EMAIL
    with sqlite3.connect(tmp_path / "t.db") as db:
        pending = db.execute("SELECT COUNT(*) FROM outbox WHERE status != 'sent'").fetchone()[0]
    assert pending == 0

    empty = cli("worker", "--store", store_url(tmp_path / "empty.db"), "--until-idle", timeout=20)
    assert empty.returncode == 0, empty.stderr


# --------------------------------------------------------------------------------- bad input


def test_unknown_execution_id_is_a_one_line_error(cli: Any, tmp_path: Path) -> None:
    """show and send on an id the store does not hold: exit 1, one line, no traceback."""
    store = store_url(tmp_path / "t.db")
    assert cli("worker", "--until-idle", "--store", store).returncode == 0  # creates the store
    assert_clean_error(cli("show", "nope", "--store", store), "no execution 'nope'")
    assert_clean_error(cli("send", "nope", "hi", "--store", store), "no execution 'nope'")
    assert_clean_error(
        cli("show", "--conversation", "ghost", "--store", store), "conversation 'ghost'"
    )


def test_show_and_send_do_not_create_a_store_from_a_typo(cli: Any, tmp_path: Path) -> None:
    """show and send on a store file that does not exist say so and create nothing."""
    store = store_url(tmp_path / "typo.db")
    assert_clean_error(cli("show", "x", "--store", store), "no store at")
    assert_clean_error(cli("send", "x", "hi", "--store", store), "no store at")
    assert not (tmp_path / "typo.db").exists()


def test_bad_store_scheme_is_a_one_line_error(cli: Any) -> None:
    """An unsupported --store scheme (or TRILHA_STORE) is named; nothing is created."""
    line = assert_clean_error(
        cli("run", ONBOARDING, "--store", "mysql://db/trilha", "--json"), "mysql"
    )
    assert "sqlite:///" in line
    assert_clean_error(cli("show", "x", "--store", "postgres:/nowhere"), "postgres")
    assert_clean_error(cli("worker", "--until-idle", env={"TRILHA_STORE": "redis://x"}), "redis")
    assert_clean_error(cli("show", "x", "--store", "sqlite:///"), "no database path")
    assert not (cli.cwd / "trilha.db").exists()


@pytest.mark.parametrize("var", ["novalue", "=5", ""])
def test_bad_var_is_a_one_line_error(cli: Any, tmp_path: Path, var: str) -> None:
    """A --var that is not KEY=VALUE: exit 1, one line naming it, no traceback."""
    assert_clean_error(
        cli("run", ONBOARDING, "--store", store_url(tmp_path / "t.db"), "--var", var, "--json"),
        "--var",
        "KEY=VALUE",
    )
    assert not (tmp_path / "t.db").exists()


def test_send_to_a_finished_execution_is_refused(cli: Any, tmp_path: Path) -> None:
    """A reply to a completed execution cannot be applied: exit 1 instead of a silent ok."""
    store = store_url(tmp_path / "t.db")
    data = run_json(cli, ONBOARDING, "--store", store, *inputs(*ANSWERS))
    assert data["status"] == "completed"
    assert_clean_error(
        cli("send", data["executionId"], "hello again", "--store", store),
        data["executionId"],
        "completed",
    )


@pytest.mark.slow
@pytest.mark.parametrize("lease", ["0", "-5", "nan", "7200"])
def test_worker_refuses_a_lease_outside_its_bounds(cli: Any, tmp_path: Path, lease: str) -> None:
    """--lease-seconds is held to the same bounds as `[engine] lease_seconds` (0.1 < s <= 3600)."""
    result = cli(
        "worker", "--store", store_url(tmp_path / "t.db"), "--until-idle", "--lease-seconds", lease
    )
    assert_clean_error(result, "lease", causes=True)


def test_missing_flow_file_and_config_are_one_line_errors(cli: Any, tmp_path: Path) -> None:
    """A flow file or --config that does not exist: exit 1, one line, no traceback."""
    store = store_url(tmp_path / "t.db")
    assert_clean_error(cli("run", "absent.json", "--store", store), "absent.json")
    assert_clean_error(
        cli("run", ONBOARDING, "--store", store, "--config", "absent.toml", "--json"),
        "absent.toml: no such configuration file",
        causes=True,
    )
    assert_clean_error(cli("run", "no-such-flow-id", "--store", store), "no-such-flow-id")
