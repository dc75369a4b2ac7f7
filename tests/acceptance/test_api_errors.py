"""From the alert to the cause through the API, on a real ``trilha serve``: issue 22's
incident (a CRM stand-in answering 500 for customer codes starting with 9) replayed
for a handful of acme's contacts, then read the way an operator would. The pending
error-rate alert links to its evidence; ``GET /v1/errors`` names the flow, the node,
the dependency and the 500, with every failing input a 9xxxx code; the group's
listing holds exactly those executions, each with the step it failed on; another
institution sees none of it; ``GET /v1/dependencies`` answers the breaker; outcomes
filter and count; a CPF in a failing request is shown masked; and bad parameters are
problems naming them.

One server is shared by the module (staging the incident takes seconds).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, start_api
from incident import BAD_PREFIX, INCIDENT_FLOW, crm_stand_in, incident_toml
from trilha.api.routes.dependencies import DependenciesOut
from trilha.api.routes.errors import ErrorsOut
from trilha.api.routes.executions import ExecutionOut, ExecutionPage
from trilha.api.routes.insight import AlertsOut, Counts

pytestmark = pytest.mark.slow

CODES = ["91234", "12345", "95555", "23456", "34567", "90001", "45678"]
BAD = sorted(c for c in CODES if c.startswith(BAD_PREFIX))
CPF = "12345678909"
#: an acme flow whose lookup puts a CPF in the URL (the stand-in answers 404 to it)
BY_CPF = {
    "id": "by-cpf",
    "start": "lookup",
    "nodes": [
        {
            "id": "lookup",
            "type": "http",
            "dependency": "crm",
            "url": "/people/{{cpf}}",
            "retry": {"maxAttempts": 1},
            "fallback": {"next": "bye"},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "bye"},
    ],
}
SETTINGS = """
[api]
rate_limit_per_second = 10000
rate_limit_burst = 10000

[alerts]
evaluation_interval_seconds = 0.2

[alerts.rules.error_rate]
for_seconds = 3600
min_events = 1

[alerts.rules.memory]
enabled = false

[alerts.rules.slow_turn]
enabled = false

[dependencies.ledger]
base_url = "http://127.0.0.1:9"
institutions = ["acme"]
"""
ENDED = ("completed", "failed", "cancelled", "timeout")


class Staged:
    """The served incident: the API, and acme's executions by customer code."""

    def __init__(self, api: Api, executions: dict[str, str], crm_url: str) -> None:
        self.api = api
        self.executions = executions
        self.crm_url = crm_url


def _settle(client: httpx.Client, execution_ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    for execution_id in execution_ids:
        while client.get(f"/v1/executions/{execution_id}").json()["status"] not in ENDED:
            assert time.monotonic() < deadline, f"{execution_id} did not end"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    """Acme's contacts give their codes to the incident flow (a CRM failing 500 for 9xxxx
    codes); one more runs the CPF lookup; everything ends before the tests read."""
    tmp = tmp_path_factory.mktemp("errors")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    cli = Cli(tmp, env)
    with crm_stand_in() as crm:
        api = start_api(cli, tmp, config=incident_toml(crm.url) + SETTINGS)
        try:
            executions: dict[str, str] = {}
            with api.client() as acme:
                for flow in (INCIDENT_FLOW, BY_CPF):
                    put = acme.put(f"/v1/flows/{flow['id']}", json=flow)
                    assert put.status_code == 201, put.text
                for code in CODES:
                    conversation = f"conv-{code}"
                    started = acme.post(
                        "/v1/executions",
                        json={
                            "flowId": "incident",
                            "conversationId": conversation,
                            "contactId": f"contact-{code}",
                        },
                    )
                    assert started.status_code == 201, started.text
                    executions[code] = started.json()["executionId"]
                    sent = acme.post(
                        f"/v1/conversations/{conversation}/messages",
                        json={
                            "messageId": f"m-{code}",
                            "contactId": f"contact-{code}",
                            "text": code,
                        },
                    )
                    assert sent.status_code == 202, sent.text
                started = acme.post(
                    "/v1/executions",
                    json={
                        "flowId": "by-cpf",
                        "conversationId": "conv-cpf",
                        "contactId": "contact-cpf",
                        "variables": {"cpf": CPF},
                    },
                )
                assert started.status_code == 201, started.text
                executions["cpf"] = started.json()["executionId"]
                _settle(acme, list(executions.values()))
            yield Staged(api, executions, crm.url)
        finally:
            for proc in cli.spawned:  # only the processes this module started
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=10)


def _incident_group(groups: list[dict[str, Any]]) -> dict[str, Any]:
    (group,) = [g for g in groups if g["flowId"] == "acme/incident" and g["status"] == 500]
    return group


def test_error_groups_name_the_cause_and_its_inputs(staged: Staged) -> None:
    """The biggest group is acme's incident flow, node lookup, dependency crm, kind
    server, status 500, touching exactly the 9xxxx executions, every failing input a
    request for a 9xxxx code and every 9xxxx code among them; the CPF lookup's 404 is
    a group of its own."""
    with staged.api.client() as acme:
        answer = acme.get("/v1/errors")
    assert answer.status_code == 200, answer.text
    body = ErrorsOut.model_validate(answer.json())
    assert time.time() - 3_700 < body.since < time.time() - 3_500  # the default: an hour
    group = _incident_group(answer.json()["groups"])
    assert answer.json()["groups"][0] == group
    assert (group["nodeId"], group["nodeType"], group["dependency"], group["kind"]) == (
        "lookup",
        "http",
        "crm",
        "server",
    )
    assert group["type"] == "NodeError" and "answered 500" in group["message"]
    assert group["executions"] == len(BAD)
    assert group["count"] >= len(BAD)  # each bad code was tried by its retry policy
    assert group["exampleExecutionId"] in {staged.executions[c] for c in BAD}
    prefix = f"GET {staged.crm_url}/customers/"
    assert all(i.startswith(prefix + BAD_PREFIX) for i in group["inputs"]), group["inputs"]
    assert sorted(i.removeprefix(prefix) for i in group["inputs"]) == BAD
    assert group["firstSeen"] <= group["lastSeen"]
    (cpf,) = [g for g in answer.json()["groups"] if g["flowId"] == "acme/by-cpf"]
    assert (cpf["nodeId"], cpf["kind"], cpf["status"], cpf["count"]) == ("lookup", "client", 404, 1)


def test_a_group_opens_exactly_its_executions_with_their_failed_steps(staged: Staged) -> None:
    """The group's executionsUrl lists exactly the 9xxxx executions, each with the
    failed step of node lookup, the request for its own code and the 500."""
    with staged.api.client() as acme:
        group = _incident_group(acme.get("/v1/errors").json()["groups"])
        listed = acme.get(group["executionsUrl"])
    assert listed.status_code == 200, listed.text
    ExecutionPage.model_validate(listed.json())
    page = listed.json()["executions"]
    by_id = {ex["executionId"]: ex for ex in page}
    assert sorted(by_id) == sorted(staged.executions[c] for c in BAD)
    for code in BAD:
        step = by_id[staged.executions[code]]["failedStep"]
        assert step["nodeId"] == "lookup"
        assert step["input"] == f"GET {staged.crm_url}/customers/{code}"
        assert step["error"]["details"]["status"] == 500
        assert step["error"]["kind"] == "server"
    # without the error filters a listing carries no failed step
    with staged.api.client() as acme:
        plain = acme.get("/v1/executions").json()["executions"]
    assert plain and all("failedStep" not in ex for ex in plain)


def test_the_first_error_is_shown_beside_the_last(staged: Staged) -> None:
    """A 9xxxx execution ended by its fallback shows its last error and the first one
    (the first attempt's 500), each naming the dependency and the request."""
    with staged.api.client() as acme:
        answer = acme.get(f"/v1/executions/{staged.executions[BAD[0]]}")
    ex = ExecutionOut.model_validate(answer.json())
    assert ex.outcome == "completed" and ex.waiting_for_dependency is None
    assert ex.first_error is not None and ex.error is not None
    assert (ex.first_error["status"], ex.first_error["attempt"]) == (500, 1)
    assert ex.first_error["dependency"] == "crm"
    assert ex.first_error["request"] == f"GET {staged.crm_url}/customers/{BAD[0]}"
    assert ex.error["status"] == 500 and ex.error["attempt"] >= ex.first_error["attempt"]
    with staged.api.client() as acme:
        good = acme.get(f"/v1/executions/{staged.executions['12345']}").json()
    assert good["error"] is None and good["firstError"] is None


def test_another_institution_sees_none_of_it(staged: Staged) -> None:
    """Beta's key gets no group, an empty listing from acme's executionsUrl, and no
    dependency acme alone may call; an admin sees acme's groups."""
    with staged.api.client() as acme:
        group = _incident_group(acme.get("/v1/errors").json()["groups"])
    with staged.api.client("beta_operator") as beta:
        assert beta.get("/v1/errors").json()["groups"] == []
        assert beta.get("/v1/errors", params={"flowId": "acme/incident"}).json()["groups"] == []
        listed = beta.get(group["executionsUrl"])
        assert listed.status_code == 200 and listed.json()["executions"] == []
        names = [d["name"] for d in beta.get("/v1/dependencies").json()["dependencies"]]
        assert names == ["crm"]
        assert beta.get("/v1/executions", params={"outcome": "completed"}).json() == {
            "executions": [],
            "nextCursor": None,
        }
        counts = beta.get("/v1/executions/counts").json()
        assert set(counts["outcomes"].values()) == {0}
    with staged.api.client("admin") as admin:
        seen = _incident_group(admin.get("/v1/errors").json()["groups"])
        # the same group (its listing's window starts at this request's default since)
        assert seen.pop("executionsUrl") != group.pop("executionsUrl")
        assert seen == group
        scoped = admin.get("/v1/errors", params={"institutionId": "beta"}).json()
        assert scoped["groups"] == []


def test_dependencies_answer_the_breaker(staged: Staged) -> None:
    """Acme may call crm and ledger: crm's breaker is closed (a 500 is the request's
    failure, not the CRM's), with its recent calls and what counts against it; the
    ledger, never called, is closed with no calls."""
    with staged.api.client() as acme:
        answer = acme.get("/v1/dependencies")
    assert answer.status_code == 200, answer.text
    DependenciesOut.model_validate(answer.json())
    crm, ledger = answer.json()["dependencies"]
    assert (crm["name"], crm["state"], crm["trip"], crm["refused"]) == ("crm", "closed", None, 0)
    assert crm["recent"]["calls"] >= len(CODES)
    assert crm["recent"]["failures"] == 0 and crm["recent"]["failureRate"] == 0
    # ...but the 500s are there: the window's calls that failed at all, counted or not
    recent = crm["recent"]
    assert 0 < recent["errors"] < recent["calls"], recent
    assert recent["successRate"] == (recent["calls"] - recent["errors"]) / recent["calls"]
    assert crm["recent"]["p50Ms"] is not None and crm["recent"]["p95Ms"] >= crm["recent"]["p50Ms"]
    assert crm["count"] == ["timeout", "connect", "429", "502", "503", "504"]
    assert crm["waitingExecutions"] == 0
    assert ledger == {
        "name": "ledger",
        "state": "closed",
        "openedAt": None,
        "closedAt": None,
        "retryAt": None,
        "trip": None,
        "recent": {
            "calls": 0,
            "failures": 0,
            "failureRate": None,
            "errors": 0,
            "successRate": None,
            "p50Ms": None,
            "p95Ms": None,
        },
        "refused": 0,
        "waitingExecutions": 0,
        "count": ["timeout", "connect", "429", "502", "503", "504"],
    }


def test_outcomes_filter_and_count(staged: Staged) -> None:
    """Every conversation completed without a person: outcome=completed lists them all,
    escalated, timeout and expired none, and the counts say so beside the states."""
    with staged.api.client() as acme:

        def listed(outcome: str) -> list[str]:
            answer = acme.get("/v1/executions", params={"outcome": outcome})
            assert answer.status_code == 200, answer.text
            return [ex["executionId"] for ex in answer.json()["executions"]]

        assert sorted(listed("completed")) == sorted(staged.executions.values())
        assert listed("escalated") == [] and listed("expired") == listed("timeout") == []
        counts = acme.get("/v1/executions/counts").json()
    Counts.model_validate(counts)
    assert counts["outcomes"] == {
        "completed": len(staged.executions),
        "escalated": 0,
        "failed": 0,
        "cancelled": 0,
        "timeout": 0,
        "invalid_input": 0,
        "expired": 0,
    }
    assert counts["counts"]["completed"] == len(staged.executions)


def test_the_pending_alert_leads_to_its_evidence(staged: Staged) -> None:
    """The error-rate alert is pending (over its threshold, short of its delay) and
    links to the executions with failed steps since its window began (the 9xxxx ones
    and the CPF lookup) and to the error groups of that window."""
    deadline = time.monotonic() + 30
    with staged.api.client() as acme:
        while True:
            body = acme.get("/v1/alerts").json()
            found = [a for a in body["alerts"] if a["rule"] == "TrilhaErrorRateHigh"]
            if found:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        AlertsOut.model_validate(body)
        (alert,) = found
        assert alert["status"] == "pending"
        evidence = alert["evidence"]
        assert re.fullmatch(r"/v1/executions\?since=\d+", evidence["executions"]), evidence
        assert re.fullmatch(r"/v1/errors\?since=\d+", evidence["errors"]), evidence
        listed = acme.get(evidence["executions"]).json()["executions"]
        failing = [staged.executions[c] for c in BAD] + [staged.executions["cpf"]]
        assert sorted(ex["executionId"] for ex in listed) == sorted(failing)
        groups = acme.get(evidence["errors"]).json()["groups"]
        assert _incident_group(groups)["executions"] == len(BAD)


def test_a_cpf_in_a_failing_request_is_masked(staged: Staged) -> None:
    """The CPF the lookup put in its URL is shown masked in the group, the listing's
    failed step and the execution's errors, and appears nowhere in them."""
    with staged.api.client() as acme:
        (group,) = acme.get("/v1/errors", params={"flowId": "by-cpf"}).json()["groups"]
        (listed,) = acme.get(group["executionsUrl"]).json()["executions"]
        execution = acme.get(f"/v1/executions/{staged.executions['cpf']}").json()
    shown = [group, listed["failedStep"], listed["error"], execution["error"]]
    for part in [*shown, execution["firstError"]]:
        assert CPF not in json.dumps(part)
    assert group["inputs"] == [f"GET {staged.crm_url}/people/{'*' * len(CPF)}"]
    assert listed["failedStep"]["input"] == group["inputs"][0]
    assert "*" * len(CPF) in execution["firstError"]["request"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/executions", {"outcome": "lost"}, "query.outcome"),
        ("/v1/executions", {"since": "yesterday"}, "query.since"),
        ("/v1/executions", {"since": "2026-01-01T00:00:00"}, "query.since"),
        ("/v1/executions", {"since": "-5"}, "query.since"),
        ("/v1/executions", {"since": "nan"}, "query.since"),
        ("/v1/executions", {"since": "99999999999"}, "query.since"),
        ("/v1/executions", {"since": "1" * 41}, "query.since"),
        ("/v1/executions", {"errorStatus": "99"}, "query.errorStatus"),
        ("/v1/executions", {"errorStatus": "five hundred"}, "query.errorStatus"),
        ("/v1/executions", {"errorKind": "boom"}, "query.errorKind"),
        ("/v1/executions", {"errorNode": "a b"}, "query.errorNode"),
        ("/v1/executions", {"errorDependency": "x" * 201}, "query.errorDependency"),
        ("/v1/executions", {"flowId": "a/b/c"}, "query.flowId"),
        ("/v1/errors", {"since": "tomorrow"}, "query.since"),
        ("/v1/errors", {"limit": "0"}, "query.limit"),
        ("/v1/errors", {"limit": "201"}, "query.limit"),
    ],
)
def test_bad_parameters_are_problems_naming_them(
    staged: Staged, path: str, params: dict[str, str], field: str
) -> None:
    """A bad outcome, time, status, kind, node, dependency, flow or limit is a 422
    problem naming the parameter, never a stack trace."""
    with staged.api.client() as acme:
        answer = acme.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert "Traceback" not in answer.text


def test_since_takes_unix_seconds_or_iso_time(staged: Staged) -> None:
    """``since`` as unix seconds and as ISO-8601 with a zone mean the same window; one
    after every failure leaves nothing."""
    with staged.api.client() as acme:
        unix = acme.get("/v1/errors", params={"since": "0"}).json()
        iso = acme.get("/v1/errors", params={"since": "1970-01-01T00:00:00Z"}).json()
        later = acme.get("/v1/errors", params={"since": str(time.time() + 60)}).json()
        listed = acme.get("/v1/executions", params={"since": str(time.time() + 60)}).json()
    assert unix["since"] == iso["since"] == 0
    assert unix["groups"] == iso["groups"] != []
    assert later["groups"] == [] and listed["executions"] == []
