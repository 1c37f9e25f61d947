from __future__ import annotations

from fastapi import APIRouter

from core.settings import get_settings
from service import store
from service.api.deps import ReadSession
from service.schemas import WorkerList

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkerList)
def list_workers(session: ReadSession) -> WorkerList:
    """List live workers (heard from within the lease) and the run each one holds."""
    workers = store.list_live_workers(session, get_settings().lease_seconds)
    return WorkerList(data=workers, count=len(workers))
