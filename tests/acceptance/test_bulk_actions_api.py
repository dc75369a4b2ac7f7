"""Bulk actions against a real ``trilha serve`` (one server for the module): a dry run
counts, a real run answers 202 with a job whose progress reaches completed, each
execution's history shows the operation with the key and the reason; viewers read
but cannot start, another institution's key neither sees nor touches acme's
executions or jobs; and ``trilha bulk`` does the same from the command line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, module_api


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "bulk", "--flows", str(EXAMPLES)) as api:
        yield api


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    return body


def waiting(client: httpx.Client, conversations: list[str]) -> list[str]:
    """Onboarding executions, each waiting for the contact's name."""
    ids = []
    for conversation in conversations:
        body = {"flowId": "onboarding", "conversationId": conversation, "contactId": "k"}
        started = client.post("/v1/executions", json=body)
        assert started.status_code == 201, started.text
        ids.append(started.json()["executionId"])
    for eid in ids:
        until(
            lambda e=eid: client.get(f"/v1/executions/{e}").json()["status"] == "waiting_input",
            f"{eid} to ask",
        )
    return ids


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        answer = client.get(f"/v1/executions/bulk/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job if job["status"] != "running" else None

    found: dict[str, Any] = until(read, f"job {job_id} to finish")
    return found


def test_dry_run_then_a_job_to_completion_for_its_tenant_only(server: Api) -> None:
    """The dry run counts and stores nothing; the job pauses acme's waiting executions,
    audited with the key and the reason; a viewer reads it (403 to start one); beta's key
    finds no acme job (404), counts none of acme's executions, and its own job leaves
    them alone."""
    api = server.tenant()
    key_id = api.keys["acme_operator"].split("_")[1]
    with (
        api.client() as acme,
        api.client("acme_viewer") as viewer,
        api.client("beta_operator") as beta,
    ):
        ids = waiting(acme, ["b1", "b2", "b3"])
        (theirs,) = waiting(beta, ["b1"])
        filter_ = {"status": "waiting_input", "flowId": "onboarding"}
        dry = acme.post(
            "/v1/executions/bulk", json={"action": "pause", "filter": filter_, "dryRun": True}
        )
        assert dry.status_code == 200, dry.text
        assert dry.json() == {"dryRun": True, "action": "pause", "total": 3}
        body = {"action": "pause", "filter": filter_, "reason": "CRM incident"}
        problem(viewer.post("/v1/executions/bulk", json=body), 403)
        started = acme.post("/v1/executions/bulk", json=body)
        assert started.status_code == 202, started.text
        job = started.json()
        assert started.headers["location"] == f"/v1/executions/bulk/{job['jobId']}"
        assert (job["action"], job["total"], job["dryRun"], job["actor"]) == (
            "pause",
            3,
            False,
            f"key:{key_id}",
        )
        done = finished(viewer, job["jobId"])  # a viewer may read it
        assert (done["status"], done["done"], done["succeeded"], done["skipped"]) == (
            "completed",
            3,
            3,
            0,
        )
        assert done["filter"] == filter_ and done["errors"] == [] and done["finishedAt"]
        for eid in ids:
            assert acme.get(f"/v1/executions/{eid}").json()["status"] == "paused"
            (audit,) = acme.get(f"/v1/executions/{eid}/history").json()["audit"]
            assert (audit["operation"], audit["actor"], audit["reason"]) == (
                "pause",
                f"key:{key_id}",
                f"CRM incident (bulk action {job['jobId']})",
            )
        # beta: acme's job is absent, acme's executions are not counted nor touched
        missing = problem(beta.get(f"/v1/executions/bulk/{job['jobId']}"), 404)
        assert missing["detail"] == f"no bulk action '{job['jobId']}'"
        everything = {"action": "cancel", "filter": {}}
        counted = beta.post("/v1/executions/bulk", json={**everything, "dryRun": True})
        assert counted.json()["total"] == 1, counted.text
        own = beta.post("/v1/executions/bulk", json=everything)
        assert own.status_code == 202, own.text
        assert finished(beta, own.json()["jobId"])["succeeded"] == 1
        assert beta.get(f"/v1/executions/{theirs}").json()["status"] == "cancelled"
        for eid in ids:
            assert acme.get(f"/v1/executions/{eid}").json()["status"] == "paused"
        problem(acme.get(f"/v1/executions/bulk/{own.json()['jobId']}"), 404)
        # each lists its own jobs only
        listed = viewer.get("/v1/executions/bulk").json()["jobs"]
        assert [j["jobId"] for j in listed] == [job["jobId"]]
        assert [j["jobId"] for j in beta.get("/v1/executions/bulk").json()["jobs"]] == [
            own.json()["jobId"]
        ]


def test_bad_requests_are_refused_naming_the_field(server: Api) -> None:
    """An unknown action, a filter field that does not exist, a reason past its bound
    and a malformed job id: 422 naming the field; an unknown job 404."""
    api = server.tenant()
    with api.client() as acme:
        for body, field in (
            ({"action": "delete"}, "body.action"),
            ({"action": "pause", "filter": {"colour": "red"}}, "body.filter.colour"),
            ({"action": "pause", "filter": {"status": "asleep"}}, "body.filter.status"),
            ({"action": "pause", "reason": "x" * 1_001}, "body.reason"),
        ):
            refused = problem(acme.post("/v1/executions/bulk", json=body), 422)
            assert field in {e["field"] for e in refused["errors"]}, refused
        problem(acme.get("/v1/executions/bulk/bulk-0"), 404)
        problem(acme.get("/v1/executions/bulk/no%20such"), 422)


def test_trilha_bulk_counts_then_acts_with_a_progress_bar(server: Api, cli: Cli) -> None:
    """``trilha bulk`` on the store: --dry-run counts, then it cancels acme's paused
    executions, prints what it did, and the job reads back through the API."""
    api = server.tenant()
    institution = api.institutions["acme"]
    with api.client() as acme:
        ids = waiting(acme, ["c1", "c2"])
        for eid in ids[:1]:
            assert acme.post(f"/v1/executions/{eid}/pause").status_code == 200
        args = ("bulk", "cancel", "--institution", institution, "--store", api.store)
        dry = cli(*args, "--status", "paused", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "1 executions would be cancelled" in dry.stdout
        ran = cli(*args, "--reason", "cleanup", "--actor", "cli:ana")
        assert ran.returncode == 0, ran.stderr
        assert "cancel: 2 done, 0 skipped, 0 failed of 2" in ran.stdout
        job_id = ran.stdout.split("(job ")[1].split(",")[0]
        job = acme.get(f"/v1/executions/bulk/{job_id}").json()
        assert (job["status"], job["actor"], job["reason"]) == ("completed", "cli:ana", "cleanup")
        for eid in ids:
            assert acme.get(f"/v1/executions/{eid}").json()["status"] == "cancelled"
