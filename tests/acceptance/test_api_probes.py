"""What independent fuzzing found (issue 23), each probed by hand on a real ``trilha
serve``: an Idempotency-Key never replays one institution's answer to another's
caller; ``/openapi.json`` says what the routes answer; a 405 lists every method of
its path; a request without a key is answered 401 before its body is judged; slow
clients are cut and connections over the cap answered 503; ids refuse control and
invisible characters, texts and variable keys refuse NUL, and a PATCH refuses
overlapping paths, each with a 422 naming the field.

One server is shared by the module (its header and body deadlines are short); the
connection cap gets a server of its own.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import EXAMPLES, Api, Cli, start_api

PROBLEM = "application/problem+json"
SETTINGS = """[channel]
kind = "memory"

[api]
header_timeout_seconds = 1
body_timeout_seconds = 2
keep_alive_seconds = 30
"""


@dataclass
class Served:
    api: Api
    #: an admin key whose own institution is acme (as an operator's first key may be)
    acme_admin: str

    def client(self, key: str | None = "acme_operator") -> httpx.Client:
        return self.api.client(key)

    def admin(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.acme_admin}"}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=30)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("probes")
    cli = Cli(tmp, _env())
    try:
        api = start_api(cli, tmp, "--flows", str(EXAMPLES), config=SETTINGS)
        made = cli(
            "keys", "create", "--institution", "acme", "--role", "admin", "--store", api.store
        )
        assert made.returncode == 0, made.stderr
        yield Served(api, made.stdout.splitlines()[-1])
    finally:
        for proc in cli.spawned:  # only the processes this module started
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem document with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:trilha:problem:")
    return body


def field_problem(response: httpx.Response, field: str) -> str:
    """The 422's message about ``field`` (which it must name)."""
    body = problem(response, 422)
    messages = [e["message"] for e in body.get("errors") or [] if e["field"] == field]
    assert messages, body
    return messages[0]


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def waiting(client: httpx.Client, conversation: str, institution: str | None = None) -> str:
    """Start the FAQ flow (it asks a question first) and wait until it waits for input."""
    body: dict[str, Any] = {
        "flowId": "faq",
        "conversationId": conversation,
        "contactId": f"contact-{conversation}",
    }
    if institution is not None:
        body["institutionId"] = institution
    started = client.post("/v1/executions", json=body)
    assert started.status_code == 201, started.text
    execution: str = started.json()["executionId"]
    until(
        lambda: client.get(f"/v1/executions/{execution}").json()["status"] == "waiting_input",
        "the execution to wait for input",
    )
    return execution


# -------------------------------------------------------------------------- idempotency


def test_a_key_never_replays_another_institutions_answer(served: Served) -> None:
    """Issue 23: an admin key of acme acting for beta, then acme's operator with the same
    body and Idempotency-Key, got beta's 202 replayed; the other order replayed a 404."""
    with served.client("beta_operator") as beta, served.admin() as admin:
        execution = waiting(beta, "idem-beta")
        message = {
            "messageId": "m-idem",
            "contactId": "contact-idem-beta",
            "text": "pix",
            "institutionId": "beta",
        }
        first = admin.post(
            "/v1/conversations/idem-beta/messages", json=message, headers={"Idempotency-Key": "K1"}
        )
        assert first.status_code == 202 and first.json()["executionId"] == execution
        with served.client() as acme:
            again = acme.post(
                "/v1/conversations/idem-beta/messages",
                json=message,
                headers={"Idempotency-Key": "K1"},
            )
            problem(again, 404)  # beta does not exist for acme's key, key or no key
            assert "idempotent-replayed" not in again.headers
            # the other order: acme's 404 is not kept for the admin's key
            refused = acme.post(
                "/v1/conversations/idem-beta/messages",
                json={**message, "messageId": "m-idem-2"},
                headers={"Idempotency-Key": "K2"},
            )
            problem(refused, 404)
        second = admin.post(
            "/v1/conversations/idem-beta/messages",
            json={**message, "messageId": "m-idem-2"},
            headers={"Idempotency-Key": "K2"},
        )
        assert second.status_code == 202, second.text
        assert "idempotent-replayed" not in second.headers
        # beta's own key keeps records apart from an admin acting for beta
        own = beta.post(
            "/v1/conversations/idem-beta/messages",
            json={k: v for k, v in message.items() if k != "institutionId"},
            headers={"Idempotency-Key": "K1"},
        )
        assert own.status_code == 202 and own.json()["duplicate"] is True
        assert "idempotent-replayed" not in own.headers
        # and the admin's own retry is still a replay
        replay = admin.post(
            "/v1/conversations/idem-beta/messages", json=message, headers={"Idempotency-Key": "K1"}
        )
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == first.json()


def test_every_keyed_route_settles_the_institution_before_the_key(served: Served) -> None:
    """The same fault looked for on every route that takes an Idempotency-Key: a start,
    a delivery receipt and an operator control, each first by an admin acting for
    beta, then by acme's operator with the same key and body: 404, never a replay."""
    with served.client("beta_operator") as beta, served.admin() as admin:
        execution = waiting(beta, "idem-controls")
        start = {
            "flowId": "faq",
            "conversationId": "idem-start",
            "contactId": "contact-idem-start",
            "institutionId": "beta",
        }
        receipt = {
            "idempotencyKey": "no-such-message",
            "status": "delivered",
            "at": int(time.time()),
            "institutionId": "beta",
        }
        calls: list[tuple[str, dict[str, Any] | None]] = [
            ("/v1/executions", start),
            ("/v1/conversations/idem-controls/statuses", receipt),
            (f"/v1/executions/{execution}/pause", None),
        ]
        with served.client() as acme:
            for number, (path, body) in enumerate(calls):
                key = {"Idempotency-Key": f"route-{number}"}
                first = admin.post(path, json=body, headers=key)
                assert first.status_code in (200, 201, 404), first.text
                foreign = acme.post(path, json=body, headers=key)
                problem(foreign, 404)
                assert "idempotent-replayed" not in foreign.headers, path


# --------------------------------------------------------------------------- 405, 401


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/executions", "GET, POST"),
        ("PUT", "/v1/executions/x/variables", "GET, PATCH"),
        ("POST", "/v1/flows/x", "GET, PUT"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_405_lists_every_method_of_the_path(
    served: Served, method: str, path: str, allowed: str
) -> None:
    with served.client() as acme:
        answer = acme.request(method, path)
    body = problem(answer, 405)
    assert answer.headers["allow"] == allowed
    assert allowed in body["detail"]


def test_a_request_without_a_key_is_401_before_its_body_is_judged(served: Served) -> None:
    """Malformed, non-JSON, oversized (sized or streamed) or slow: without a valid key
    every one is 401 with WWW-Authenticate; with one, the body's own answer."""

    def oversized() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 50_000

    bodies: list[tuple[dict[str, Any], int]] = [
        ({"content": b'{"flowId": ', "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"flowId=x", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"[" * 2_000_000, "headers": {"content-type": "application/json"}}, 413),
        ({"content": oversized, "headers": {"content-type": "application/json"}}, 413),
    ]
    for wrong in (None, "Bearer trk_nope_nope"):
        headers = {"Authorization": wrong} if wrong else {}
        with httpx.Client(base_url=served.api.url, headers=headers, timeout=30) as anonymous:
            for kwargs, _ in bodies:
                content = kwargs["content"]
                sent = {**kwargs, "content": content() if callable(content) else content}
                answer = anonymous.post("/v1/executions", **sent)
                problem(answer, 401)
                assert answer.headers["www-authenticate"].startswith("Bearer")
            problem(
                anonymous.put("/v1/flows/x", content=b"{", headers=bodies[0][0]["headers"]), 401
            )
            problem(anonymous.delete("/v1/executions"), 401)  # the key before the method
    with served.client() as acme:
        for kwargs, status in bodies:
            content = kwargs["content"]
            sent = {**kwargs, "content": content() if callable(content) else content}
            problem(acme.post("/v1/executions", **sent), status)


# ---------------------------------------------------------------------------- OpenAPI


def test_the_document_says_every_error_is_a_problem(served: Served) -> None:
    """Every error answer of every operation is ``application/problem+json`` (the
    framework documented its 422 as ``application/json``); every ``/v1`` operation
    documents 401, 429 and 503, every write 400, 408, 413 and 415."""
    document = httpx.get(f"{served.api.url}/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            for code, response in responses.items():
                if int(code) >= 400 and path != "/readyz":
                    assert list(response["content"]) == [PROBLEM], (where, code)
            if path.startswith("/v1/"):
                assert {"401", "429", "503"} <= set(responses), where
            if method in ("post", "put", "patch"):
                assert {"400", "408", "413", "415", "422"} <= set(responses), where
    links = document["paths"]["/v1/executions"]["post"]["responses"]["201"]["links"]
    assert links["GetExecution"]["parameters"] == {"executionId": "$response.body#/executionId"}


def test_what_flows_and_me_answer_is_documented(served: Served) -> None:
    """The answers the fuzzer found undocumented: each one's status is listed for its
    operation, and sent as the media type listed."""
    document = httpx.get(f"{served.api.url}/openapi.json").json()
    flow = {"id": "doc", "start": "a", "nodes": [{"id": "a", "type": "end", "text": "bye"}]}
    with (
        served.client() as acme,
        served.client("acme_viewer") as viewer,
        httpx.Client(base_url=served.api.url, timeout=30) as anonymous,
    ):
        probes = [
            ("get", "/v1/flows/{flowId}", acme.get("/v1/flows/absent")),
            ("get", "/v1/flows/{flowId}/versions", acme.get("/v1/flows/absent/versions")),
            ("get", "/v1/flows", acme.get("/v1/flows", params={"institutionId": "beta"})),
            ("get", "/v1/flows", acme.get("/v1/flows", params={"institutionId": "a b"})),
            (
                "put",
                "/v1/flows/{flowId}",
                acme.put(
                    "/v1/flows/doc", content=b"{", headers={"content-type": "application/json"}
                ),
            ),
            ("put", "/v1/flows/{flowId}", viewer.put("/v1/flows/doc", json=flow)),
            ("put", "/v1/flows/{flowId}", acme.put("/v1/flows/doc", json={**flow, "start": "z"})),
            ("put", "/v1/flows/{flowId}", anonymous.put("/v1/flows/doc", json=flow)),
            ("get", "/v1/flows", anonymous.get("/v1/flows")),
            ("get", "/v1/me", anonymous.get("/v1/me")),
            ("post", "/v1/executions", acme.post("/v1/executions", json={})),
        ]
    seen = set()
    for method, path, answer in probes:
        documented = document["paths"][path][method]["responses"]
        code = str(answer.status_code)
        assert code in documented, (method, path, code, answer.text)
        media = answer.headers["content-type"].split(";")[0]
        assert media in documented[code]["content"], (method, path, code, media)
        seen.add(answer.status_code)
    assert seen == {400, 401, 403, 404, 422}


# ----------------------------------------------------------------- slow clients, the cap


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65_536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_client_sending_its_headers_slowly_is_cut(served: Served) -> None:
    """A header line every 0.2 s, for up to 30 s, never finishing the headers: the
    server answers 408 and closes the connection (``header_timeout_seconds = 1``)."""
    with _connect(served.api.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
        cut = False
        for number in range(150):
            time.sleep(0.2)
            try:
                sock.sendall(f"X-Slow-{number}: 1\r\n".encode())
            except OSError:  # the server closed it
                cut = True
                break
        answer = _read_to_end(sock) if cut else b""
    assert cut, "the server waited for the headers as long as the client took"
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"urn:trilha:problem:timeout" in answer
    # a connection that opens and says nothing is closed too, without an answer
    with _connect(served.api.url) as idle:
        assert _read_to_end(idle) == b""
    # a prompt client is served as ever
    assert httpx.get(f"{served.api.url}/healthz").status_code == 200


def test_a_body_that_never_finishes_is_answered_408(served: Served) -> None:
    """Headers promptly, then a byte of the body every 0.2 s until the server answers:
    408 once the body's deadline passes (``body_timeout_seconds = 2``, counted from the
    headers, so the trickle does not extend it), and the connection is closed."""
    key = served.api.keys["acme_operator"]
    with _connect(served.api.url) as sock:
        sock.sendall(
            b"POST /v1/executions HTTP/1.1\r\nHost: probe\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        answered = False
        for _ in range(150):  # 30 s, far past the deadline
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                answered = True
                break
            sock.sendall(b" ")
        answer = _read_to_end(sock) if answered else b""
    assert answered, "the server waited for the body as long as the client took"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body)["type"] == "urn:trilha:problem:timeout"


def test_connections_over_the_cap_are_answered_503(cli: Cli, tmp_path: Path) -> None:
    """``max_connections = 3``: with three connections open (each served once, then
    idle), a fourth is answered 503 with Retry-After and closed; once one of the
    three closes, a new connection is served."""
    api = start_api(
        cli,
        tmp_path,
        config='[channel]\nkind = "memory"\n[api]\nmax_connections = 3\n'
        "keep_alive_seconds = 60\nheader_timeout_seconds = 60\n",
    )
    held = [_connect(api.url) for _ in range(3)]
    try:
        for sock in held:  # served: the server has accepted and counted it
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
            assert sock.recv(65_536).startswith(b"HTTP/1.1 200 ")
        refused = httpx.get(f"{api.url}/healthz", timeout=30)
        body = problem(refused, 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert body["type"] == "urn:trilha:problem:overloaded"
    finally:
        held.pop().close()
    try:
        until(
            lambda: httpx.get(f"{api.url}/healthz", timeout=30).status_code == 200,
            "a connection to be served once one closed",
        )
    finally:
        for sock in held:
            sock.close()
    _, output = api.stop()
    assert "api.connections_full" in output


# ------------------------------------------------------------------ ids, NUL, overlaps


@pytest.mark.parametrize("character", ["\u0085", "\u2028", "\ufeff", "\u200b", "\x00"])
def test_ids_refuse_control_and_invisible_characters(served: Served, character: str) -> None:
    code = f"U+{ord(character):04X}"
    with served.client() as acme:
        for field in ("conversationId", "contactId"):
            body = {"flowId": "faq", "conversationId": "c-ok", "contactId": "k-ok"}
            body[field] = f"id{character}x"
            message = field_problem(acme.post("/v1/executions", json=body), f"body.{field}")
            assert "printable" in message and f"{code} at position 2" in message
        if character != "\x00":  # a NUL cannot travel in a URL's path
            path = f"/v1/conversations/c{character}/messages"
            sent = acme.post(path, json={"messageId": "m", "contactId": "k", "text": "oi"})
            assert code in field_problem(sent, "path.conversationId")
        listed = acme.get("/v1/executions", params={"contactId": f"k{character}"})
        assert code in field_problem(listed, "query.contactId")


def test_nul_is_refused_in_texts_and_variable_keys(served: Served) -> None:
    with served.client() as acme:
        execution = waiting(acme, "nul-texts")
        sent = acme.post(
            "/v1/conversations/nul-texts/messages",
            json={"messageId": "m-nul", "contactId": "contact-nul-texts", "text": "a\x00b"},
        )
        assert "NUL" in field_problem(sent, "body.text")
        started = acme.post(
            "/v1/executions",
            json={
                "flowId": "faq",
                "conversationId": "nul-vars",
                "contactId": "k",
                "variables": {"customer": {"na\x00me": "x"}},
            },
        )
        message = field_problem(started, "body.variables")
        assert "NUL" in message and "customer.na\\x00me" in message
        valued = acme.post(
            "/v1/executions",
            json={
                "flowId": "faq",
                "conversationId": "nul-v",
                "contactId": "k",
                "variables": {"a": ["x\x00"]},
            },
        )
        assert "a[0]" in field_problem(valued, "body.variables")
        patched = acme.patch(f"/v1/executions/{execution}/variables", json={"set": {"a\x00": 1}})
        assert "NUL" in field_problem(patched, "body.set")
        paused = acme.post(f"/v1/executions/{execution}/pause", json={"reason": "x\x00"})
        assert "NUL" in field_problem(paused, "body.reason")
        assert acme.get(f"/v1/executions/{execution}").json()["status"] == "waiting_input"


def test_a_patch_refuses_overlapping_paths(served: Served) -> None:
    """Setting ``a`` and ``a.b`` at once silently dropped one (which, by their order):
    refused, naming both; set apart, each works."""
    with served.client() as acme:
        execution = waiting(acme, "overlap")
        for assign in ({"a": 1, "a.b": 2}, {"a.b": 2, "a": {"c": 1}}, {"x.y": 1, "x.y.z": 2}):
            answer = acme.patch(f"/v1/executions/{execution}/variables", json={"set": assign})
            shorter, longer = sorted(assign, key=len)
            message = field_problem(answer, "body.set")
            assert f"'{shorter}'" in message and f"'{longer}'" in message
        fine = acme.patch(
            f"/v1/executions/{execution}/variables", json={"set": {"a.b": 2, "ab": 1, "a_b": 3}}
        )
        assert fine.status_code == 200, fine.text
        variables = fine.json()["variables"]
        assert variables["a"] == {"b": 2} and variables["ab"] == 1 and variables["a_b"] == 3
        # a path that cannot be written is named with its field too
        bad = acme.patch(f"/v1/executions/{execution}/variables", json={"unset": ["a b"]})
        assert "'a b'" in field_problem(bad, "body.unset")
        # sys.* is trilha's (issue 15): an operator cannot forge it either
        for body, field in (
            ({"set": {"sys.x": 1}}, "body.set"),
            ({"unset": ["sys"]}, "body.unset"),
        ):
            forged = acme.patch(f"/v1/executions/{execution}/variables", json=body)
            assert "read-only" in field_problem(forged, field)
