"""The dashboard: one static page and its assets, served from `service/web/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    """Serve the dashboard page (runs, run, compare, new-run and new-sweep views)."""
    return FileResponse(WEB_DIR / "index.html", headers=NO_CACHE)


@router.get("/ui/{path:path}")
def dashboard_asset(path: str) -> FileResponse:
    """Serve a file under service/web/ (the chart library sits in vendor/, from npm)."""
    target = WEB_DIR / "missing" if "\x00" in path else (WEB_DIR / path).resolve()
    if not target.is_relative_to(WEB_DIR) or not target.is_file():
        raise HTTPException(status_code=404, detail=f"no dashboard file {path!r}")
    return FileResponse(target, headers=NO_CACHE)
