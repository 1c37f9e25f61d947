"""The HTTP routers, gathered in one place."""

from fastapi import APIRouter

from service.api import dashboard, experiments, health, metrics, sweeps, theory, workers
from service.api.errors import GUARDED, documented

# Any request may be too big or find the database down.
api_router = APIRouter(responses=documented(413, 503))
# Auth may refuse a request on any route but /healthz.
guarded = documented(*GUARDED)
api_router.include_router(health.router)
api_router.include_router(experiments.router, responses=guarded)
api_router.include_router(metrics.router, responses=guarded)
api_router.include_router(sweeps.router, responses=guarded)
api_router.include_router(theory.router, responses=guarded)
api_router.include_router(dashboard.router, responses=guarded)
api_router.include_router(metrics.compare_router, responses=guarded)
api_router.include_router(workers.router, responses=guarded)
