from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from service.api.deps import ReadSession
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(session: ReadSession) -> Health:
    """Report that the API is up and its database answers."""
    session.execute(text("SELECT 1"))
    return Health(status="ok")
