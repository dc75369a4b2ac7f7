"""What a newcomer meets first on the API, answered so it can be acted on: a key sent
without ``Bearer`` (or with another scheme, or ``Bearer`` alone) is told how to send it,
without the key echoed back; a body that is not JSON is told where the parser stopped
and why; ``/docs`` is served whole by trilha (Swagger UI shipped in the package, cached
for a year, under a Content-Security-Policy of this origin only)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_basics import problem

from conftest import Api, module_api

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "src" / "trilha" / "api" / "static" / "swagger-ui"
SEND_IT = "send it as Authorization: Bearer KEY"
FLOW = {"id": "mine", "start": "a", "nodes": [{"id": "a", "type": "end", "text": "bye"}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with module_api(tmp_path_factory, "answers") as api:
        yield api


@pytest.fixture
def api(served: Api) -> Api:
    return served.tenant()


def refused(api: Api, authorization: str) -> str:
    """The detail of the 401 ``GET /v1/flows`` answers with this ``Authorization``."""
    with httpx.Client(base_url=api.url, timeout=10) as anonymous:
        answer = anonymous.get("/v1/flows", headers={"Authorization": authorization})
    body = problem(answer, 401)
    assert body["type"] == "urn:trilha:problem:unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    detail: str = body["detail"]
    return detail


def test_a_key_without_bearer_is_told_to_add_it_and_never_echoed(api: Api) -> None:
    key = api.keys["acme_viewer"]
    secret = key.split("_", 2)[2]
    bare = refused(api, key)
    assert SEND_IT in bare and "without its Bearer scheme" in bare
    for told in (
        bare,
        refused(api, f"Token {key}"),
        refused(api, f"{key} {key}"),
        refused(api, "Bearer"),
    ):
        assert SEND_IT in told
        assert secret not in told and key.split("_")[1] not in told
    assert "'Token' is not accepted" in refused(api, f"Token {key}")
    assert "'Basic' is not accepted" in refused(api, "Basic dXNlcjpwYXNz")
    assert "no key follows" in refused(api, "Bearer")
    assert "is not Bearer followed by a key" in refused(api, f"{key} {key}")
    with httpx.Client(base_url=api.url, timeout=10) as anonymous:
        nothing = problem(anonymous.get("/v1/flows"), 401)["detail"]
        assert "trilha keys create" in nothing
        # the scheme is case-insensitive, and spaces before the key do not matter
        for header in (f"bearer {key}", f"BEARER  {key}"):
            ok = anonymous.get("/v1/flows", headers={"Authorization": header})
            assert ok.status_code == 200, (header, ok.text)


def where(body: str) -> str:
    """Where Python's parser stops on ``body``, worded as the API words it."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno} (char {exc.pos})"
    raise AssertionError(f"{body!r} is valid JSON")


def malformed(answer: httpx.Response, body: str) -> dict[str, Any]:
    found = problem(answer, 400)
    expected = where(body)
    assert found["type"] == "urn:trilha:problem:malformed_json"
    assert found["detail"] == f"body is not valid JSON: {expected}"
    (error,) = found["errors"]
    assert error["field"] == "body" and error["message"] == expected
    return dict(error)


def test_malformed_json_is_answered_with_where_and_why(api: Api) -> None:
    json_type = {"content-type": "application/json"}
    missing_comma = '{\n  "id": "mine",\n  "start": "a"\n  "nodes": []\n}'
    truncated = '{"flowId": "mine", "contactId": '
    with api.client() as acme:
        error = malformed(
            acme.put("/v1/flows/mine", content=missing_comma, headers=json_type), missing_comma
        )
        assert (error["line"], error["column"], error["char"]) == (4, 3, 35)
        assert "Expecting ',' delimiter at line 4, column 3 (char 35)" in where(missing_comma)
        error = malformed(
            acme.post("/v1/executions", content=truncated, headers=json_type), truncated
        )
        assert (error["line"], error["column"]) == (1, len(truncated) + 1)
        # a body that says no content-type at all is read as JSON, and judged the same
        untyped = acme.post("/v1/executions", content=truncated.encode())
        assert "content-type" not in untyped.request.headers
        malformed(untyped, truncated)
        published = acme.put("/v1/flows/mine", content=json.dumps(FLOW).encode())
        assert published.status_code in (200, 201), published.text
        accents = '{"text": "olá",}'  # columns count characters, not bytes
        error = malformed(
            acme.post(
                "/v1/conversations/c1/messages",
                content=accents.encode(),
                headers=json_type,
            ),
            accents,
        )
        assert error["column"] == accents.index("}") + 1
        latin = problem(
            acme.post("/v1/executions", content=b'{"flowId": "caf\xe9"}', headers=json_type), 400
        )
        assert latin["detail"] == (
            "body is not valid JSON: it is not UTF-8 text (byte 0xe9 at byte 15)"
        )
        deep = problem(
            acme.post("/v1/executions", content=b"[" * 100_000 + b"]" * 100_000, headers=json_type),
            400,
        )
        assert deep["detail"] == "body is not valid JSON: it is nested too deeply"
        # a well-formed body is judged by its shape as before: 422, naming the field
        shaped = problem(acme.put("/v1/flows/mine", json={**FLOW, "start": 5}), 422)
        assert any("start" in e["field"] for e in shaped["errors"]), shaped


def test_docs_are_served_from_trilha_itself(served: Api) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as anonymous:
        page = anonymous.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "https://" not in html and "http://" not in html  # no CDN, nothing remote
        assert "/openapi.json" in html
        assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html)
        version = json.loads((ASSETS / "package.json").read_text("utf-8"))["version"]
        assert sorted(a.rsplit("/", 1)[1] for a in assets) == [
            "favicon-32x32.png",
            "swagger-ui-bundle.js",
            "swagger-ui.css",
        ]
        assert all(a.startswith(f"/docs/assets/swagger-ui-{version}/") for a in assets)
        # the page's one inline script (the call that starts Swagger UI) is allowed by
        # its hash, and nothing else but this origin
        policy = dict(
            [*d.split(" ", 1), ""][:2] for d in page.headers["content-security-policy"].split("; ")
        )
        (inline,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert policy["script-src"] == f"'self' 'sha256-{digest}'"
        assert policy["default-src"] == "'self'" and policy["connect-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        for asset in assets:
            got = anonymous.get(asset)
            assert got.status_code == 200, asset
            assert got.content == (ASSETS / asset.rsplit("/", 1)[1]).read_bytes()
            assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert got.headers["x-content-type-options"] == "nosniff"
        kinds = {a.rsplit(".", 1)[1]: anonymous.get(a).headers["content-type"] for a in assets}
        assert kinds["js"].startswith("text/javascript") and kinds["css"].startswith("text/css")
        assert kinds["png"] == "image/png"
        problem(anonymous.get(f"/docs/assets/swagger-ui-{version}/index.html"), 404)
        problem(anonymous.get(f"/docs/assets/swagger-ui-{version}/../../openapi.json"), 404)
        problem(anonymous.get("/docs/oauth2-redirect"), 404)  # no OAuth2 flow is offered
        for license_file in ("LICENSE", "NOTICE"):  # shipped beside it, as Apache-2.0 asks
            assert (ASSETS / license_file).read_text("utf-8").strip()
