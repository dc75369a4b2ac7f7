"""Business hours through a real ``trilha serve`` over HTTP: calendars stored, read, listed
and forgotten per institution (trilha.toml's beside them), bad input refused naming the
field, tenancy, the per-institution limit, and flows that wait until open or branch on
``is_open``; and a server killed while an execution waits until open, started again on the
same SQLite file, moves it on at the opening, once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, Drain, module_api, serve, start_api
from trilha.api.routes.calendars import CalendarOut, CalendarsOut
from trilha.core.calendars import DAYS

PROBLEM_KEYS = {"type", "title", "status", "detail"}

CLINIC: dict[str, Any] = {
    "timeZone": "America/Sao_Paulo",
    "hours": {day: [["08:00", "12:00"], ["13:00", "18:00"]] for day in DAYS[:5]},
    "holidays": [{"date": "2025-12-25", "name": "Natal"}, "2025-12-24"],
}
ALWAYS: dict[str, Any] = {"timeZone": "UTC", "hours": {day: [["00:00", "24:00"]] for day in DAYS}}

CONFIG = """[channel]
kind = "memory"

[api]
max_calendars = 3

[calendars.office]
time_zone = "Europe/Lisbon"
institutions = ["acme"]
hours = { mon = [["09:00", "17:00"]] }

[calendars.everyone]
timeZone = "UTC"
hours = { sun = [["10:00", "11:00"]] }
holidays = ["2030-01-06"]
"""


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A problem document (RFC 9457) with this status, never a stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert "Traceback" not in response.text
    return body


def fields(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body.get("errors", [])}


#: the tenants the module's server is configured for: one per test (see ``served``)
TENANTS = [f"t{n}" for n in range(40)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Iterator[str]]]:
    """One server for the module, CONFIG's acme-only calendar given to every test's acme."""
    acmes = ", ".join(f'"acme-{tag}"' for tag in TENANTS)
    config = CONFIG.replace('institutions = ["acme"]', f"institutions = [{acmes}]")
    with module_api(tmp_path_factory, "calendars", config=config) as api:
        yield api, iter(TENANTS)


@pytest.fixture
def served(server: tuple[Api, Iterator[str]]) -> Api:
    """The module's server, with institutions no other test uses."""
    api, tags = server
    return api.tenant(next(tags))


def test_put_get_list_delete(served: Api) -> None:
    """A calendar is stored (201), replaced (200), read and listed with whether it is open
    now and when it next opens, then forgotten (204, then 404)."""
    with served.client() as acme:
        created = acme.put("/v1/calendars/clinic", json=CLINIC)
        assert created.status_code == 201, created.text
        body = CalendarOut.model_validate(created.json())
        acme_id = served.institutions["acme"]
        assert body.name == "clinic" and body.institution_id == acme_id and body.source == "api"
        assert body.definition == {
            "timeZone": "America/Sao_Paulo",
            "hours": CLINIC["hours"] | {"sat": [], "sun": []},
            "holidays": [{"date": "2025-12-24"}, {"date": "2025-12-25", "name": "Natal"}],
        }
        assert body.next_open is not None and body.next_open.endswith("-03:00")
        assert body.created_at == body.updated_at

        replaced = acme.put("/v1/calendars/clinic", json=body.definition | {"timeZone": "UTC"})
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["createdAt"] == body.created_at
        assert replaced.json()["definition"]["timeZone"] == "UTC"

        got = acme.get("/v1/calendars/clinic")
        assert got.status_code == 200 and got.json()["definition"]["timeZone"] == "UTC"
        assert acme.put("/v1/calendars/always", json=ALWAYS).status_code == 201
        always = acme.get("/v1/calendars/always").json()
        assert always["openNow"] is True and always["nextOpen"] is not None

        listed = CalendarsOut.model_validate(acme.get("/v1/calendars").json())
        assert [(c.name, c.source) for c in listed.calendars] == [
            ("always", "api"),
            ("clinic", "api"),
            ("everyone", "config"),
            ("office", "config"),
        ]
        assert acme.delete("/v1/calendars/clinic").status_code == 204
        problem(acme.get("/v1/calendars/clinic"), 404)
        problem(acme.delete("/v1/calendars/clinic"), 404)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (
            {"timeZone": "UTC", "hours": {"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}},
            "body.hours.mon",
            "starts before 08:00-12:00 ends",
        ),
        ({"timeZone": "UTC", "hours": {"tue": [["9:00", "12:00"]]}}, "body.hours.tue[0]", "'9:00'"),
        ({"timeZone": "America/Atlantis"}, "body.timeZone", "not an IANA time zone"),
        ({"timeZone": "UTC", "holidays": ["2025-02-30"]}, "body.holidays[0].date", "not a date"),
        ({"timeZone": "UTC", "hours": {"funday": []}}, "body.hours.funday", "Extra inputs"),
        ({"hours": {}}, "body.timeZone", "Field required"),
        (
            {"timeZone": "UTC", "holidays": ["2025-01-01"] * 501},
            "body.holidays",
            "at most 500 items",
        ),
    ],
)
def test_bad_calendars_are_refused_naming_the_field(
    served: Api, body: dict[str, Any], field: str, says: str
) -> None:
    with served.client() as acme:
        found = fields(problem(acme.put("/v1/calendars/clinic", json=body), 422))
        assert field in found and says in found[field], found
        problem(acme.get("/v1/calendars/clinic"), 404)  # nothing stored


def test_bad_names_and_keys(served: Api) -> None:
    """A name of the wrong shape is 422 naming the path; a viewer reads but may not write;
    an admin key names the institution it means."""
    with served.client() as acme:
        assert "path.name" in fields(problem(acme.put("/v1/calendars/a.b", json=ALWAYS), 422))
        assert "path.name" in fields(problem(acme.get("/v1/calendars/" + "x" * 65), 422))
        assert acme.put("/v1/calendars/clinic", json=CLINIC).status_code == 201
    with served.client("acme_viewer") as viewer:
        assert viewer.get("/v1/calendars/clinic").status_code == 200
        problem(viewer.put("/v1/calendars/clinic", json=CLINIC), 403)
        problem(viewer.delete("/v1/calendars/clinic"), 403)
    with served.client("admin") as admin:
        acme_id, beta_id = served.institutions["acme"], served.institutions["beta"]
        assert "query.institutionId" in fields(problem(admin.get("/v1/calendars"), 422))
        listed = admin.get("/v1/calendars", params={"institutionId": acme_id}).json()
        assert "clinic" in [c["name"] for c in listed["calendars"]]
        put = admin.put("/v1/calendars/desk", params={"institutionId": beta_id}, json=ALWAYS)
        assert put.status_code == 201 and put.json()["institutionId"] == beta_id


def test_one_institution_never_sees_anothers_calendars(served: Api) -> None:
    """acme's calendar does not exist for beta's key (404 on read and delete, absent from
    its list); beta's own of the same name is another calendar; trilha.toml's for acme only
    is not beta's."""
    with served.client() as acme, served.client("beta_operator") as beta:
        assert acme.put("/v1/calendars/clinic", json=CLINIC).status_code == 201
        problem(beta.get("/v1/calendars/clinic"), 404)
        problem(beta.delete("/v1/calendars/clinic"), 404)
        problem(beta.get("/v1/calendars/office"), 404)
        acme_id = served.institutions["acme"]
        problem(beta.get("/v1/calendars", params={"institutionId": acme_id}), 404)
        assert [c["name"] for c in beta.get("/v1/calendars").json()["calendars"]] == ["everyone"]
        assert beta.put("/v1/calendars/clinic", json=ALWAYS).status_code == 201
        assert acme.get("/v1/calendars/clinic").json()["definition"]["timeZone"] == (
            "America/Sao_Paulo"
        )


def test_configured_calendars_and_the_limit(served: Api) -> None:
    """trilha.toml's calendar cannot be deleted (409) but an own one of its name takes its
    place until deleted; past [api] max_calendars a new calendar is 409 (kind limit)."""
    with served.client() as acme:
        office = acme.get("/v1/calendars/office").json()
        assert office["source"] == "config" and office["createdAt"] is None
        assert office["definition"]["timeZone"] == "Europe/Lisbon"
        body = problem(acme.delete("/v1/calendars/office"), 409)
        assert "trilha.toml" in body["detail"]
        assert acme.put("/v1/calendars/office", json=ALWAYS).status_code == 201
        assert acme.get("/v1/calendars/office").json()["source"] == "api"
        assert acme.delete("/v1/calendars/office").status_code == 204
        assert acme.get("/v1/calendars/office").json()["source"] == "config"

        for name in ("a", "b", "c"):
            assert acme.put(f"/v1/calendars/{name}", json=ALWAYS).status_code == 201
        limit = problem(acme.put("/v1/calendars/d", json=ALWAYS), 409)
        assert limit["type"] == "urn:trilha:problem:limit" and limit["limit"] == 3
        assert "max_calendars" in limit["detail"]
        assert acme.put("/v1/calendars/a", json=CLINIC).status_code == 200  # replacing is fine


def closed_until(opens: datetime) -> dict[str, Any]:
    """A UTC calendar open for the minute ``opens`` starts, on its day only."""
    start = opens.strftime("%H:%M")
    end = (opens + timedelta(minutes=30)).strftime("%H:%M") if opens.hour < 23 else "24:00"
    if end < start:
        end = "24:00"
    return {
        "timeZone": "UTC",
        "holidays": [{"date": opens.date().isoformat(), "hours": [[start, end]]}],
    }


HOURS_FLOW: dict[str, Any] = {
    "id": "desk",
    "start": "route",
    "nodes": [
        {
            "id": "route",
            "type": "condition",
            "branches": [{"when": "is_open('always')", "next": "wait"}],
            "default": "closed",
        },
        {"id": "closed", "type": "end", "text": "closed"},
        {"id": "wait", "type": "wait_until_open", "calendar": "soon", "next": "open"},
        {"id": "open", "type": "end", "text": "open since {{next_open('soon')}}"},
    ],
}


def start(client: httpx.Client, conversation: str, flow: str = "desk") -> str:
    started = client.post(
        "/v1/executions",
        json={"flowId": flow, "conversationId": conversation, "contactId": "c-1"},
    )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def read(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def next_minute(margin: float) -> datetime:
    """The first whole minute at least ``margin`` seconds from now (UTC)."""
    soon = datetime.now(UTC) + timedelta(seconds=margin)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_flows_branch_and_wait_on_calendars_over_http(served: Api) -> None:
    """Published and run through the API: is_open picks the branch; wait_until_open moves on
    at once when open, else waits (waiting_delay, due at the opening; the restart test below
    sees it move on); a flow of beta never reads acme's calendars."""
    opens = next_minute(600)
    with served.client() as acme, served.client("beta_operator") as beta:
        assert acme.put("/v1/calendars/always", json=ALWAYS).status_code == 201
        assert acme.put("/v1/calendars/soon", json=closed_until(opens)).status_code == 201
        published = {
            who: client.put("/v1/flows/desk", json=HOURS_FLOW)
            for who, client in (("acme", acme), ("beta", beta))
        }
        assert {who: answer.status_code for who, answer in published.items()} == {
            "acme": 201,
            "beta": 201,
        }
        assert published["acme"].json()["warnings"] == []
        beta_id = served.institutions["beta"]
        assert published["beta"].json()["warnings"] == [  # beta has none of them (yet)
            "nodes[0].branches[0].when: warning: no calendar 'always' exists for institution"
            f" '{beta_id}' (yet)",
            f"nodes[2].calendar: warning: no calendar 'soon' exists for institution '{beta_id}'"
            " (yet)",
        ]
        now_open = {**HOURS_FLOW, "id": "desk-open"}
        now_open["nodes"] = [
            n | {"calendar": "always"} if n["id"] == "wait" else n for n in HOURS_FLOW["nodes"]
        ]
        assert acme.put("/v1/flows/desk-open", json=now_open).status_code == 201

        waits = start(acme, "conv-1")
        waiting = until(
            lambda: (e := read(acme, waits))["status"] == "waiting_delay" and e, 30, "the wait"
        )
        assert waiting["waitingFor"] == "timer" and waiting["currentNodeId"] == "wait"
        assert datetime.fromisoformat(waiting["dueAt"]) == opens
        steps = acme.get(f"/v1/executions/{waits}/steps").json()["steps"]
        assert [s["output"] for s in steps if s["nodeId"] == "wait"] == [
            {"calendar": "soon", "open": False, "opensAt": opens.isoformat().replace("+00:00", "Z")}
        ]

        goes_on = start(acme, "conv-2", "desk-open")
        done = until(
            lambda: (e := read(acme, goes_on))["status"] == "completed" and e, 30, "the end"
        )
        said = [t["text"] for t in done["transcript"] if t["from"] == "bot"]
        assert len(said) == 1 and said[0].startswith("open since 20")

        other = start(beta, "conv-3")
        ended = until(lambda: (e := read(beta, other))["status"] == "failed" and e, 30, "failure")
        assert ended["error"]["message"] == "is_open(): unknown calendar 'always' at column 1"


@pytest.mark.slow
def test_killed_while_waiting_until_open(cli: Cli, tmp_path: Path) -> None:
    """SIGKILL the server while an execution waits until open; started again on the same
    SQLite file, it still waits for the same opening and moves on at it, saying its text once."""
    api = start_api(cli, tmp_path, config=CONFIG)
    opens = next_minute(12)  # the kill comes a few seconds after the start
    with api.client() as acme:
        assert acme.put("/v1/calendars/always", json=ALWAYS).status_code == 201
        assert acme.put("/v1/calendars/soon", json=closed_until(opens)).status_code == 201
        assert acme.put("/v1/flows/desk", json=HOURS_FLOW).status_code == 201
        execution_id = start(acme, "conv-1")
        before = until(
            lambda: (e := read(acme, execution_id))["status"] == "waiting_delay" and e,
            30,
            "the wait",
        )
    assert datetime.now(UTC) < opens, "the machine was too slow to kill the server in time"
    api.process.send_signal(signal.SIGKILL)
    api.process.wait(timeout=10)
    assert api.process.returncode == -signal.SIGKILL

    process, url = serve(cli, tmp_path, api.store)
    again = Api(url, process, api.store, api.keys, Drain(process))
    with again.client() as acme:
        after = read(acme, execution_id)
        assert after["status"] == "waiting_delay"
        assert (after["dueAt"], after["currentNodeId"]) == (before["dueAt"], "wait")
        done = until(
            lambda: (e := read(acme, execution_id))["status"] == "completed" and e,
            120,
            "the opening after the restart",
        )
        assert datetime.fromisoformat(done["history"][-1]["at"]) >= opens
        said = [t["text"] for t in done["transcript"] if t["from"] == "bot"]
        assert len(said) == 1, said  # once: not again after the restart
        assert said[0].startswith("open since " + opens.strftime("%Y-%m-%dT%H:%M"))
    code, output = again.stop()
    assert code == 0 and "api.internal_error" not in output
