"""The execution debugger: static files shipped inside the package, served as-is.

No build step and no CDN: the page is plain HTML, CSS and JavaScript modules
under ``trilha/debugger/``; it talks to the same ``/v1`` API with the key typed
into its login form, so it sees and may do exactly what that key may. Files are
served from a fixed list read at import (no path from the request reaches the
file system), with a Content-Security-Policy that allows only this origin (and
https images, the thumbnails of images a conversation carries).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from trilha.api.problems import Problem
from trilha.api.routes.insight import drawings_of

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[2] / "debugger"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: the page may load and call only its own origin; no inline script, no frames. Images
#: alone may come from any https origin: a transcript shows an image a message carries
#: as a thumbnail of its link (never an http one, which the page shows as a link only)
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self';"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _files() -> dict[str, Path]:
    return {
        p.relative_to(STATIC).as_posix(): p
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in _TYPES
    }


#: the page's files, listed once at import (the module docstring's "fixed list"), not
#: walked again on every request
FILES = _files()


@router.get("/debugger")
async def debugger_root() -> RedirectResponse:
    return RedirectResponse("/debugger/", status_code=308)


@router.get("/debugger/{name:path}")
async def debugger_file(request: Request, name: str) -> Response:
    """A file of the page; ``/debugger/`` and any unknown route of the page's own
    (``/debugger/executions/ID``) answer ``index.html``, which routes on the client.
    The page will ask for flows' drawings: the drawing process starts now, so the
    first one does not wait for it (about a second)."""
    path = FILES.get(name)
    if path is None or name == "index.html":
        drawings_of(request.app).warm()
    if path is None:
        if "." in name.rsplit("/", 1)[-1] or ".." in name.split("/"):
            raise Problem(404, f"no file '{name}' in the debugger", kind="not_found")
        path = FILES.get("index.html")
        if path is None:
            raise Problem(404, "the debugger's files are missing from this installation")
    return Response(path.read_bytes(), media_type=_TYPES[path.suffix], headers=_HEADERS)
