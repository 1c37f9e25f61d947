"""The HTTP routers, gathered in one place."""

from fastapi import APIRouter

from service.api import dashboard, experiments, health, metrics, sweeps, theory, workers

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(experiments.router)
api_router.include_router(metrics.router)
api_router.include_router(sweeps.router)
api_router.include_router(theory.router)
api_router.include_router(dashboard.router)
api_router.include_router(metrics.compare_router)
api_router.include_router(workers.router)
