"""``trilha stats``: aggregates over executions that real ``trilha run`` processes ran.

The traffic is known by construction: a lookup flow whose HTTP dependency (a real
local server) fails twice and then answers slowly, and a one-question survey; two
institutions. Counts are checked against that construction; durations, which only
the clock knows, against the rows the runs left in the SQLite file.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

LOOKUP = {
    "id": "lookup",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "One moment...", "next": "fetch"},
        {
            "id": "fetch",
            "type": "http",
            "dependency": "api",
            "url": "/data",
            "saveAs": "data",
            "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1, "jitter": False},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "Got {{data.value}}."},
    ],
}
SURVEY = {
    "id": "survey",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Happy?", "variable": "happy", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Thanks!"},
    ],
}
#: the successful dependency answer takes this long: the http node is the slowest
SLOW = 0.3


@dataclass(frozen=True)
class Traffic:
    db: Path
    url: str
    #: a time after the failing run ended and before the others started
    cut: float
    failed_id: str


def run_flow(cli: Any, tmp_path: Path, url: str, flow: Path, institution: str, *inputs: str) -> Any:
    args = [arg for text in inputs for arg in ("--input", text)]
    result = cli(
        "run",
        flow,
        "--store",
        url,
        "--config",
        tmp_path / "trilha.toml",
        "--institution",
        institution,
        "--json",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def traffic(cli: Any, tmp_path: Path, http_server: Any) -> Traffic:
    """acme: one lookup that fails (two failed attempts), one that succeeds; beta: one
    lookup that succeeds and one survey answered (two turns)."""
    http_server.route("GET", "/data", body={"value": 7}, delay=SLOW)
    http_server.fail_first("GET", "/data", 2, status=500)
    (tmp_path / "trilha.toml").write_text(
        f'[channel]\nkind = "memory"\n\n[dependencies.api]\nbase_url = "{http_server.url}"\n',
        encoding="utf-8",
    )
    lookup, survey = tmp_path / "lookup.json", tmp_path / "survey.json"
    lookup.write_text(json.dumps(LOOKUP), encoding="utf-8")
    survey.write_text(json.dumps(SURVEY), encoding="utf-8")
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"

    failed = run_flow(cli, tmp_path, url, lookup, "acme")
    assert failed["status"] == "failed"
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    assert run_flow(cli, tmp_path, url, lookup, "acme")["status"] == "completed"
    assert run_flow(cli, tmp_path, url, lookup, "beta")["status"] == "completed"
    assert run_flow(cli, tmp_path, url, survey, "beta", "yes")["status"] == "completed"
    assert http_server.count("GET", "/data") == 4
    return Traffic(db, url, cut, failed["executionId"])


def stats_json(cli: Any, url: str, *args: str) -> dict[str, Any]:
    result = cli("stats", "--store", url, "--json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(row) for row in conn.execute(sql, params)]


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def by_type(data: dict[str, Any]) -> dict[str, tuple[int, int, float | None]]:
    return {n["nodeType"]: (n["runs"], n["errors"], n["successRate"]) for n in data["nodeTypes"]}


def test_json_holds_the_figures_of_what_ran(cli: Any, traffic: Traffic) -> None:
    """Success by node type, turn times by flow (mean, nearest-rank p95, max), errors by
    institution and the slowest nodes, all from the store the runs wrote."""
    data = stats_json(cli, traffic.url, "--since", "1h")
    assert data["institutionId"] is None
    since = datetime.fromisoformat(data["since"]).timestamp()
    assert abs(since - (time.time() - 3600)) < 60

    assert by_type(data) == {
        "message": (3, 0, 1.0),
        "http": (4, 2, 0.5),
        "end": (3, 0, 1.0),
        "question": (2, 0, 1.0),
    }
    (http,) = [n for n in data["nodeTypes"] if n["nodeType"] == "http"]
    (durations,) = query(traffic.db, "SELECT AVG(duration) FROM checkpoints WHERE node_id='fetch'")
    assert http["meanSeconds"] == pytest.approx(durations[0])
    assert http["meanSeconds"] >= SLOW / 2  # two of the four calls waited SLOW

    flows = {f["flowId"]: f for f in data["flows"]}
    assert [f["flowId"] for f in data["flows"]] == ["lookup", "survey"]
    for flow_id, turns in (("lookup", 3), ("survey", 2)):
        rows = [
            d for (d,) in query(traffic.db, "SELECT duration FROM turns WHERE flow_id=?", flow_id)
        ]
        assert len(rows) == turns
        assert flows[flow_id] == {
            "flowId": flow_id,
            "turns": turns,
            "meanSeconds": pytest.approx(sum(rows) / turns),
            "p95Seconds": pytest.approx(nearest_rank(rows, 0.95)),
            "maxSeconds": pytest.approx(max(rows)),
        }
    assert flows["lookup"]["maxSeconds"] >= SLOW

    assert data["institutions"] == [{"institutionId": "acme", "errors": 2, "failedExecutions": 1}]

    slowest = data["slowestNodes"]
    assert slowest[0] | {"meanSeconds": 0, "maxSeconds": 0} == {
        "flowId": "lookup",
        "nodeId": "fetch",
        "nodeType": "http",
        "runs": 4,
        "meanSeconds": 0,
        "maxSeconds": 0,
    }
    assert slowest[0]["maxSeconds"] >= SLOW
    assert len(slowest) == 5  # every (flow, node) that ran: hello, fetch, bye; ask, bye
    means = [s["meanSeconds"] for s in slowest]
    assert means == sorted(means, reverse=True)
    assert len(stats_json(cli, traffic.url, "--limit", "2")["slowestNodes"]) == 2


def _row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{text}")


def test_tables_print_the_same_figures(cli: Any, traffic: Traffic) -> None:
    """The console form: a heading with the window, then the four tables with the same
    counts and readable durations."""
    result = cli("stats", "--store", traffic.url)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.match(r"^since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n", text), text
    for title in (
        "success rate by node type",
        "turn time by flow",
        "errors by institution",
        "slowest nodes",
    ):
        assert title in text
    assert _row(text, "http")[1:4] == ["4", "2", "50.0%"]
    assert _row(text, "message")[1:4] == ["3", "0", "100.0%"]
    assert _row(text, "survey")[1] == "2"
    assert _row(text, "acme")[1:] == ["2", "1"]
    lookup = _row(text, "lookup")  # the turn table comes before the slowest nodes
    assert lookup[1] == "3"
    duration = re.compile(r"^\d+(\.\d+)?(µs|ms|s)$|^\d+m\d\ds$")
    for cell in lookup[2:5]:
        assert duration.match(cell), cell
    assert "beta" not in text  # beta had no errors: nothing to list
    assert "no " not in text


def test_institution_narrows_every_table(cli: Any, traffic: Traffic) -> None:
    """--institution beta: only beta's steps, turns and errors (none)."""
    data = stats_json(cli, traffic.url, "--institution", "beta")
    assert data["institutionId"] == "beta"
    assert by_type(data) == {
        "message": (1, 0, 1.0),
        "http": (1, 0, 1.0),
        "end": (2, 0, 1.0),
        "question": (2, 0, 1.0),
    }
    assert {f["flowId"]: f["turns"] for f in data["flows"]} == {"lookup": 1, "survey": 2}
    assert data["institutions"] == []
    assert {(s["flowId"], s["nodeId"]) for s in data["slowestNodes"]} == {
        ("lookup", "hello"),
        ("lookup", "fetch"),
        ("lookup", "bye"),
        ("survey", "ask"),
        ("survey", "bye"),
    }
    acme = stats_json(cli, traffic.url, "--institution", "acme")
    assert by_type(acme)["http"] == (3, 2, pytest.approx(1 / 3))
    assert acme["institutions"] == [{"institutionId": "acme", "errors": 2, "failedExecutions": 1}]

    text = cli("stats", "--store", traffic.url, "--institution", "nobody")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].endswith(" · institution nobody")
    assert "no node executions since" in text.stdout


def test_since_an_iso_time_leaves_out_what_ran_before(cli: Any, traffic: Traffic) -> None:
    """--since the moment after the failing run: its failures and its turn are gone."""
    cut = datetime.fromtimestamp(traffic.cut, UTC).isoformat().replace("+00:00", "Z")
    data = stats_json(cli, traffic.url, "--since", cut)
    assert by_type(data)["http"] == (2, 0, 1.0)
    assert data["institutions"] == []
    assert {f["flowId"]: f["turns"] for f in data["flows"]} == {"lookup": 2, "survey": 2}
    everything = stats_json(cli, traffic.url, "--since", "2d")
    assert by_type(everything)["http"] == (4, 2, 0.5)


@pytest.mark.parametrize(
    ("since", "reason"),
    [("5x", "expected a span like 90s"), ("0h", "longer than zero"), ("2999-01-01", "ahead")],
)
def test_bad_since_is_a_one_line_error_naming_the_option(
    cli: Any, tmp_path: Path, since: str, reason: str
) -> None:
    """Exit 1, one line on stderr naming --since and why, nothing on stdout."""
    result = cli("stats", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--since", since)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--since" in lines[0] and reason in lines[0], lines[0]


def test_empty_store_says_nothing_ran(cli: Any, tmp_path: Path) -> None:
    """A store nothing ran on: exit 0, every table says its window held nothing."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    made = cli("worker", "--until-idle", "--store", url)
    assert made.returncode == 0, made.stderr
    result = cli("stats", "--store", url)
    assert result.returncode == 0, result.stderr
    for what in ("node executions", "finished turns", "step errors or failed executions"):
        assert f"no {what} since" in result.stdout
    assert stats_json(cli, url) | {"since": None} == {
        "since": None,
        "institutionId": None,
        "nodeTypes": [],
        "flows": [],
        "institutions": [],
        "slowestNodes": [],
    }


def test_unknown_store_is_the_usual_error(cli: Any, tmp_path: Path) -> None:
    """No database at the path: the one-line error every read command gives, and no
    database file is created by asking."""
    missing = tmp_path / "missing.db"
    result: subprocess.CompletedProcess[str] = cli("stats", "--store", f"sqlite:///{missing}")
    shown = cli("show", "x", "--store", f"sqlite:///{missing}")
    assert result.returncode == shown.returncode == 1
    assert result.stdout == ""
    assert result.stderr == shown.stderr
    assert "Traceback" not in result.stderr and "check --store" in result.stderr
    assert not missing.exists()
