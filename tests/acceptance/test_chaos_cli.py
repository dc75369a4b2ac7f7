"""``trilha chaos`` end to end: the whole matrix at the test command's scale must meet
every criterion's required level; a seed replays the same history; a run that misses a
criterion says so, exits 4 and names the seed that reproduces it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli

pytestmark = pytest.mark.slow

#: the issue's small scale ("for example 200 executions each"): every scenario with 100
#: executions, 1,100 in all, still meets every required level with room (seed 1: every
#: criterion at target but recovery time, a pass) and injects every kind of fault, in
#: about two thirds of the time 200 take; the nightly size is the documented command
EXECUTIONS = 100


def work_in(tmp_path: Path) -> dict[str, str]:
    """The run's stores and process logs (a temporary folder it keeps, and names in the
    report) under the test's own folder, which pytest cleans, not in /tmp for good."""
    return {"TMPDIR": str(tmp_path)}


def report_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    return data


def test_every_scenario_meets_every_required_level(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "report"
    run = cli(
        "chaos",
        "--scenario",
        "all",
        "--executions",
        str(EXECUTIONS),
        "--seed",
        "1",
        "--report",
        str(folder),
        env=work_in(tmp_path),
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = report_of(folder)
    assert report["passed"] is True
    verdicts = {c["id"]: c["verdict"] for c in report["criteria"]}
    assert sorted(verdicts) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "fail" not in verdicts.values(), report["criteria"]
    names = [s["name"] for s in report["scenarios"]]
    assert names == [
        "processor_failures",
        "latency",
        "corrupted_data",
        "dependencies_disconnected",
        "store_unavailable",
        "overload",
        "worker_crashes",
        "everything",
        "half_dependencies_down",
        "partial_dependency_failure",
        "flaky_dependency",
    ]
    for scenario in report["scenarios"]:
        assert sum(scenario["outcomes"].values()) == EXECUTIONS, scenario["name"]
        assert scenario["outcomes"].get("unfinished", 0) == 0, scenario["name"]
        if scenario["name"] != "overload":  # overload injects load, not faults
            assert scenario["faults"], scenario["name"]  # the faults really happened
    # the CRM fails a third of its inputs: those take the node's fallback, the others are
    # served, and the breaker (which a 500 does not count against) never takes them down
    partial = next(s for s in report["scenarios"] if s["name"] == "partial_dependency_failure")
    figures = partial["partialFailure"]
    assert figures["dependency"] == "crm" and figures["injected"] is True, figures
    assert figures["badInputs"] > 0 and figures["goodInputs"] > figures["badInputs"], figures
    assert figures["goodServed"] == figures["goodInputs"], figures
    assert figures["badFellBack"] == figures["badInputs"], figures
    assert partial["outcomes"].get("escalated", 0) == 0, partial["outcomes"]
    assert partial["faults"]["failed_by_input"] >= figures["badInputs"]
    # the CRM fails 30 % of its calls at random (issue 17): with the product's defaults the
    # breaker never opens, retries (in rounds) mend every call, no fallback, no person
    flaky = next(s for s in report["scenarios"] if s["name"] == "flaky_dependency")
    figures = flaky["flakyDependency"]
    assert figures["dependency"] == "crm" and figures["injected"] is True, figures
    assert 0.2 < figures["failedCalls"] / figures["calls"] < 0.4, figures
    assert flaky["faults"]["failed_at_random"] == figures["failedCalls"]
    assert figures["breakerOpenings"] == 0 and figures["fellBack"] == 0, figures
    assert flaky["outcomes"] == {"completed": EXECUTIONS, "unfinished": 0}, flaky["outcomes"]
    assert flaky["recoverySeconds"]["max"] < 30, flaky["recoverySeconds"]
    crashes = next(s for s in report["scenarios"] if s["name"] == "worker_crashes")
    assert crashes["faults"]["worker_kill"] >= 1 and crashes["simulated"] is False
    # the table on stdout, and a report a browser opens offline
    for line in ("transient errors recovered", "escalation to a human", "target"):
        assert line in run.stdout
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "http://" not in html and "<script" not in html
    assert "Flaky dependency" in html and "breaker openings" in html


def test_a_seed_replays_the_same_history(cli: Cli, tmp_path: Path) -> None:
    digests = []
    for n, seed in enumerate(("7", "7", "8")):
        folder = tmp_path / f"r{n}"
        run = cli(
            "chaos",
            "--scenario",
            "everything",
            "--executions",
            "60",
            "--seed",
            seed,
            "--report",
            str(folder),
            env=work_in(tmp_path),
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        (scenario,) = report_of(folder)["scenarios"]
        digests.append(scenario["historyDigest"])
        assert scenario["simulated"] is True
    assert digests[0] == digests[1]  # same seed: the same faults, states and messages
    assert digests[0] != digests[2]  # another seed: another history


FRAGILE = {
    "id": "fragile",
    "start": "call",
    "nodes": [
        {
            "id": "call",
            "type": "http",
            "dependency": "ledger",
            "method": "GET",
            "url": "/balance",
            "timeoutSeconds": 2,
            "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1},
            "next": "second",
        },
        {
            "id": "second",
            "type": "http",
            "dependency": "stamps",
            "method": "GET",
            "url": "/stamp",
            "timeoutSeconds": 2,
            "fallback": {"next": "done"},
            "next": "done",
        },
        {"id": "done", "type": "end"},
    ],
}


def test_a_run_that_misses_a_level_fails_and_its_seed_reproduces_it(
    cli: Cli, tmp_path: Path
) -> None:
    """A flow whose first call has no fallback cannot keep its basic path with that
    dependency down: criterion 6 fails, the run exits 4 and prints the replay."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "fragile.json").write_text(json.dumps(FRAGILE), encoding="utf-8")
    digests = []
    for n in range(2):
        folder = tmp_path / f"f{n}"
        run = cli(
            "chaos",
            "--flows",
            str(flows),
            "--scenario",
            "half_dependencies_down",
            "--executions",
            "30",
            "--seed",
            "5",
            "--report",
            str(folder),
            env=work_in(tmp_path),
            timeout=600,
        )
        assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
        replay = (
            f"trilha chaos --flows {flows} --scenario half_dependencies_down"
            " --executions 30 --concurrency 50 --seed 5"
        )
        assert replay in run.stderr
        report = report_of(folder)
        assert report["passed"] is False
        basic = next(c for c in report["criteria"] if c["id"] == 6)
        assert basic["verdict"] == "fail" and basic["measured"] == 0
        (scenario,) = report["scenarios"]
        assert scenario["failingSeed"] == 5
        assert report["replay"] == [scenario["replay"]] == [replay]
        assert scenario["outcomes"]["failed"] == 30
        digests.append(scenario["historyDigest"])
    assert digests[0] == digests[1]


def test_bad_options_are_one_line_errors(cli: Cli) -> None:
    unknown = cli("chaos", "--scenario", "meteor")
    assert unknown.returncode == 1
    assert "--scenario 'meteor': expected all or one of processor_failures" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    empty = cli("chaos", "--flows", str(cli.cwd))
    assert empty.returncode == 1 and "no flow files" in empty.stderr
