"""``trilha serve`` as a platform meets it first: health, keys, problem documents,
flows and their tenancy, limits, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import (
    ADDRESS_IN_USE,
    EXAMPLES,
    PORT_TRIES,
    TRILHA,
    Api,
    Cli,
    free_port,
    module_api,
    start_api,
)

FLOW = {"id": "mine", "start": "a", "nodes": [{"id": "a", "type": "end", "text": "bye"}]}
END_TO_NOWHERE = {"id": "a", "type": "end", "next": "z"}
PROBLEM_KEYS = {"type", "title", "status", "detail"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem document (RFC 9457) with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert "Traceback" not in response.text
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "basics", "--flows", str(EXAMPLES)) as api:
        yield api


@pytest.fixture
def api(server: Api) -> Api:
    """The module's server (the examples as shared flows), with institutions of the
    test's own."""
    return server.tenant()


@pytest.fixture
def own_api(cli: Cli, tmp_path: Path) -> Api:
    """A server of the test's own (it is stopped), with the examples as shared flows."""
    return start_api(cli, tmp_path, "--flows", str(EXAMPLES))


def test_health_readiness_metrics_and_openapi(api: Api) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["workers"]["ok"]
        problem(anonymous.get("/metrics"), 401)  # every tenant's figures: an admin's only
        document = anonymous.get("/openapi.json").json()
    with api.client("admin") as admin:
        assert "trilha_queue_due" in admin.get("/metrics").text
    assert document["openapi"].startswith("3.")
    assert "/v1/flows/{flowId}" in document["paths"]


def test_keys_are_required_and_checked(api: Api, cli: Cli) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        body = problem(anonymous.get("/v1/flows"), 401)
        assert "trilha keys create" in body["detail"]
        problem(anonymous.get("/v1/flows", headers={"Authorization": "Bearer trk_x_y"}), 401)
        forged = api.keys["acme_operator"][:-4] + "AAAA"
        problem(anonymous.get("/v1/flows", headers={"Authorization": f"Bearer {forged}"}), 401)
        ok = anonymous.get("/v1/flows", headers={"X-API-Key": api.keys["acme_viewer"]})
        assert ok.status_code == 200
    key_id = api.keys["acme_viewer"].split("_")[1]
    listed = cli("keys", "list", "--store", api.store, "--json")
    assert key_id in listed.stdout and api.keys["acme_viewer"] not in listed.stdout
    assert cli("keys", "revoke", key_id, "--store", api.store).returncode == 0
    with api.client("acme_viewer") as revoked:
        deadline = time.monotonic() + 10  # the server caches a verified key for 5 s
        while revoked.get("/v1/flows").status_code != 401:
            assert time.monotonic() < deadline, "a revoked key kept working"
            time.sleep(0.25)
    again = cli("keys", "revoke", key_id, "--store", api.store)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_key_creation_refuses_bad_input(cli: Cli, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    bad_role = cli("keys", "create", "--institution", "acme", "--role", "root", "--store", store)
    assert bad_role.returncode == 1 and "--role 'root'" in bad_role.stderr
    bad_inst = cli("keys", "create", "--institution", "a b", "--store", store)
    assert bad_inst.returncode == 1 and "--institution" in bad_inst.stderr
    made = cli("keys", "create", "--institution", "acme", "--store", store)
    assert made.returncode == 0
    assert re.fullmatch(r"trk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", made.stdout.splitlines()[-1])


def test_flows_publish_read_version_and_tenancy(api: Api) -> None:
    acme_id, beta_id = api.institutions["acme"], api.institutions["beta"]
    with api.client("acme_operator") as acme, api.client("beta_operator") as beta:
        first = acme.put("/v1/flows/mine", json=FLOW)
        assert first.status_code == 201, first.text
        assert first.json()["flowId"] == "mine" and first.json()["version"] == 1
        assert acme.put("/v1/flows/mine", json=FLOW).status_code == 200  # unchanged
        changed = {**FLOW, "nodes": [{"id": "a", "type": "end", "text": "tchau"}]}
        assert acme.put("/v1/flows/mine", json=changed).json()["version"] == 2
        assert acme.get("/v1/flows/mine").json()["version"] == 2
        assert acme.get("/v1/flows/mine", params={"version": 1}).json()["definition"]["nodes"] == [
            {"id": "a", "type": "end", "text": "bye"}
        ]
        versions = acme.get("/v1/flows/mine/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        names = {f["flowId"] for f in acme.get("/v1/flows").json()["flows"]}
        assert {"mine", "onboarding"} <= names  # its own and the shared examples

        # another institution: acme's flow does not exist for it, shared ones do
        problem(beta.get("/v1/flows/mine"), 404)
        problem(beta.get("/v1/flows/mine/versions"), 404)
        assert "mine" not in {f["flowId"] for f in beta.get("/v1/flows").json()["flows"]}
        assert beta.get("/v1/flows/onboarding").json()["shared"] is True
        # beta's own "mine" is another flow altogether
        assert beta.put("/v1/flows/mine", json=FLOW).json()["version"] == 1
        assert acme.get("/v1/flows/mine").json()["version"] == 2
        problem(beta.get("/v1/flows", params={"institutionId": acme_id}), 404)
    with api.client("admin") as admin:
        stored = {f["storedId"] for f in admin.get("/v1/flows").json()["flows"]}
        assert {f"{acme_id}/mine", f"{beta_id}/mine", "onboarding"} <= stored
        assert admin.get("/v1/flows/mine", params={"institutionId": acme_id}).json()["version"] == 2


def test_bad_input_gets_problem_documents(api: Api) -> None:
    with api.client("acme_operator") as acme, api.client("acme_viewer") as viewer:
        invalid = problem(
            acme.put(
                "/v1/flows/bad",
                json={"start": "a", "nodes": [{"id": "a", "type": "end", "next": "z"}]},
            ),
            422,
        )
        assert invalid["errors"][0]["field"] == "nodes[0].next"
        assert "no node 'z'" in invalid["errors"][0]["message"]
        mismatch = problem(acme.put("/v1/flows/bad", json={**FLOW, "id": "other"}), 422)
        assert mismatch["errors"][0]["field"] == "body.id"
        malformed = acme.put(
            "/v1/flows/bad", content=b'{"start": ', headers={"content-type": "application/json"}
        )
        problem(malformed, 400)
        problem(acme.put("/v1/flows/bad%20id", json=FLOW), 422)
        problem(acme.put("/v1/flows/big", json={**FLOW, "description": "x" * 2_000_000}), 413)

        def streamed() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"id": "big", "description": "'
            for _ in range(40):
                yield b"x" * 50_000
            yield b'"}'

        chunked = acme.put(
            "/v1/flows/big", content=streamed(), headers={"content-type": "application/json"}
        )
        problem(chunked, 413)
        small = acme.put(
            "/v1/flows/small",
            content=iter([json.dumps({**FLOW, "id": "small"}).encode()]),
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 201, small.text  # a small streamed body passes
        # a body that says it is something else than JSON: 415, whether sized or streamed
        form = problem(
            acme.post(
                "/v1/executions", content=b"flowId=x", headers={"content-type": "text/plain"}
            ),
            415,
        )
        assert "application/json" in form["detail"] and "text/plain" in form["detail"]
        problem(
            acme.put(
                "/v1/flows/small",
                content=iter([b"id: small"]),
                headers={"content-type": "application/x-yaml"},
            ),
            415,
        )
        # JSON with parameters or a +json media type, and no content-type at all, pass on
        typed = acme.put(
            "/v1/flows/small",
            content=json.dumps({**FLOW, "id": "small"}).encode(),
            headers={"content-type": "application/merge-patch+json; charset=utf-8"},
        )
        assert typed.status_code == 200, typed.text  # unchanged: same definition
        bare = acme.post("/v1/executions/nope/pause")  # no body, no content-type
        problem(bare, 404)
        forbidden = problem(viewer.put("/v1/flows/mine", json=FLOW), 403)
        assert "viewer" in forbidden["detail"]
        problem(acme.get("/v1/nowhere"), 404)
        problem(acme.delete("/v1/flows/mine"), 405)


def test_rate_limit_answers_429_with_retry_after(cli: Cli, tmp_path: Path) -> None:
    limited = start_api(
        cli,
        tmp_path,
        config='[channel]\nkind = "memory"\n'
        "[api]\nrate_limit_per_second = 1\nrate_limit_burst = 3\n",
    )
    with limited.client("acme_viewer") as viewer, limited.client("beta_operator") as other:
        codes = [viewer.get("/v1/flows").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        too_many = viewer.get("/v1/flows")
        problem(too_many, 429)
        assert int(too_many.headers["retry-after"]) >= 1
        assert other.get("/v1/flows").status_code == 200  # limits are per key
        time.sleep(1.1)
        assert viewer.get("/v1/flows").status_code == 200


def test_sigterm_stops_the_server_cleanly(own_api: Api) -> None:
    api = own_api
    with api.client() as acme:
        assert acme.get("/v1/flows").status_code == 200
    code, output = api.stop(signal.SIGTERM, timeout=30)
    assert code == 0, output
    assert "api.stopped" in output and "Traceback" not in output


def test_first_start_creates_one_admin_key(cli: Cli, tmp_path: Path) -> None:
    """A store with no key: `trilha serve` puts an admin key in a file only its owner reads
    and prints the file's path; off a terminal, never the key (it would reach the logs)."""
    store = f"sqlite:///{tmp_path / 'fresh.db'}"
    key_file = tmp_path / "fresh.db.admin-key"
    for _ in range(PORT_TRIES):  # a port picked free may be taken before serve binds it
        for earlier in tmp_path.glob("fresh.db*"):  # a fresh store on each try
            earlier.unlink()
        key_file.write_text("a stale key of an earlier fresh.db\n", encoding="utf-8")
        key_file.chmod(0o644)  # replaced, never reused with its mode
        port = free_port()
        process = subprocess.Popen(
            [str(TRILHA), "serve", "--port", str(port), "--store", store],
            cwd=tmp_path,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        cli.spawned.append(process)
        assert process.stdout is not None
        printed = ""
        for line in process.stdout:
            printed += line
            if "KEY=$(cat " in line:
                break
        assert f"the key is in {key_file}, readable by you only: KEY=$(cat {key_file})" in printed
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text(encoding="utf-8").strip()
        assert re.fullmatch(r"trk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", key)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        answer = None
        while process.poll() is None:
            try:
                answer = httpx.get(f"{url}/v1/flows", headers={"Authorization": f"Bearer {key}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        if answer is not None:
            break
        printed += process.communicate(timeout=30)[0]
        assert ADDRESS_IN_USE in printed.lower(), printed
    else:
        raise AssertionError(f"trilha serve found no free port in {PORT_TRIES} tries")
    assert answer.status_code == 200
    process.send_signal(signal.SIGTERM)
    printed += process.communicate(timeout=30)[0]
    assert process.returncode == 0
    assert key not in printed and "trk_" not in printed
    listed = cli("keys", "list", "--store", store, "--json")
    assert listed.stdout.count('"role": "admin"') == 1  # and only on the first start
