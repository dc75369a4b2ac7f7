"""``/docs``: the API's interactive reference, served whole by trilha itself.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so the page is blank on a
machine without the internet (an isolated network, a laptop on a train). Swagger UI
(the npm package ``swagger-ui-dist``, Apache-2.0, its LICENSE and NOTICE beside it)
ships inside the package instead, under ``trilha/api/static/swagger-ui/``, and the
page is made by FastAPI's ``get_swagger_ui_html`` pointing at those files, as FastAPI
documents for self-hosting them. No OAuth2 flow is offered (keys are sent as
``Authorization: Bearer KEY``), so there is no OAuth2 redirect page.

The files are served from a fixed list read at import (no path from the request
reaches the file system) under a path that names Swagger UI's version, so they can be
cached for a year: an upgrade changes their URL. The page has a
Content-Security-Policy that allows only this origin, and its one inline script (the
call that starts Swagger UI, which FastAPI writes) by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from trilha.api.problems import Problem

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).resolve().parents[1] / "static" / "swagger-ui"
#: the vendored Swagger UI's version, as its own package.json says it
VERSION: str = json.loads((ASSETS / "package.json").read_text("utf-8"))["version"]
#: where the files are served: the version in the path, so a year's caching is safe
PREFIX = f"/docs/assets/swagger-ui-{VERSION}"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
#: the files, read once at import: a handful of them, about 2 MB in all
FILES: dict[str, bytes] = {name: (ASSETS / name).read_bytes() for name in _TYPES}
_ASSET_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}
#: the inline scripts of a page (those without ``src``)
_INLINE = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _source(script: str) -> str:
    """A CSP source that allows this inline script, and only it."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def _page(request: Request) -> HTMLResponse:
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} API",
        swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
        oauth2_redirect_url=None,
    )
    html = bytes(page.body).decode()
    hashes = " ".join(_source(script) for script in _INLINE.findall(html))
    policy = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self';"
        " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'self'"
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    """The interactive reference of the API, from ``/openapi.json``."""
    return _page(request)


@router.get(PREFIX + "/{name}")
async def docs_asset(name: str) -> Response:
    """One of Swagger UI's files, cached for a year (its URL names its version)."""
    body = FILES.get(name)
    if body is None:
        raise Problem(404, f"no file '{name}' in the API reference's assets", kind="not_found")
    return Response(body, media_type=_TYPES[name], headers=_ASSET_HEADERS)
