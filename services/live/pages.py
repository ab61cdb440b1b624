"""The decision pages: every live decision explained in a browser.

Two HTML pages and their scripts, served as files from `static/` (no build
step, nothing from a CDN): `decisions.html` lists recent decisions from
`GET /decisions`, `decision.html` draws one from `GET /decisions/{id}` (its
search tree, the features the network saw, provenance, the order). Each page
fetches its JSON from its own path minus `/view`, so the JSON routes stay the
service's and the pages hold no state.

Register these before the JSON route `GET /decisions/{decision_id}`: routes
match in order, and that one would otherwise take `/decisions/view` for a
decision called "view"."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

__all__ = ["STATIC_DIR", "add_decision_pages"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
LIST_PAGE = "decisions.html"
DECISION_PAGE = "decision.html"
_MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def static_file(name: str) -> Path:
    """A file of the static folder by its plain name; anything else (a path, a dot file,
    a kind of file we do not serve) is 404, so no request reaches outside the folder."""
    path = STATIC_DIR / name
    if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in _MEDIA_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return path


def _file(name: str) -> FileResponse:
    path = static_file(name)
    # the pages change with the service's code: a browser must not keep an old script beside a new page
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


def add_decision_pages(app: FastAPI) -> None:
    """GET /decisions/view (the list), /decisions/{decision_id}/view (one decision)
    and /static/live/{name} (their scripts and styles)."""

    @app.get("/decisions/view", include_in_schema=False)
    def decisions_page() -> FileResponse:
        return _file(LIST_PAGE)

    @app.get("/decisions/{decision_id}/view", include_in_schema=False)
    def decision_page(decision_id: str) -> FileResponse:
        return _file(DECISION_PAGE)  # the page reads its id from its own address

    @app.get("/static/live/{name}", include_in_schema=False)
    def live_static(name: str) -> FileResponse:
        return _file(name)
