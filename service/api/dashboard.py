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
    """Serve the dashboard page (runs, run, sweeps, compare, new-run and new-sweep views)."""
    return FileResponse(WEB_DIR / "index.html", headers=NO_CACHE)


@router.get("/ui/{path:path}")
def dashboard_asset(path: str) -> FileResponse:
    """Serve a file under service/web/ (the chart library sits in vendor/, from npm)."""
    target = _asset(path)
    if target is None:
        raise HTTPException(status_code=404, detail=f"no dashboard file {path[:100]!r}")
    return FileResponse(target, headers=NO_CACHE)


def _asset(path: str) -> Path | None:
    """The file under WEB_DIR that `path` names, or None (outside it, missing, or a name the
    filesystem refuses: NUL, too long)."""
    if "\x00" in path:
        return None
    try:
        target = (WEB_DIR / path).resolve()
        return target if target.is_relative_to(WEB_DIR) and target.is_file() else None
    except OSError:
        return None
