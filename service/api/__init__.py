"""The HTTP routers, gathered in one place."""

from fastapi import APIRouter

from service.api import dashboard, docs, experiments, health, metrics, sweeps, theory, workers
from service.api.errors import documented

# Any request may be too big or find the database down.
api_router = APIRouter(responses=documented(413, 503))
api_router.include_router(health.router)
api_router.include_router(experiments.router)
api_router.include_router(metrics.router)
api_router.include_router(sweeps.router)
api_router.include_router(theory.router)
api_router.include_router(dashboard.router)
api_router.include_router(docs.router)
api_router.include_router(metrics.compare_router)
api_router.include_router(workers.router)
