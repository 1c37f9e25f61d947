"""The HTTP routers, gathered in one place."""

from fastapi import APIRouter

from service.api import experiments, health, metrics, workers

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(experiments.router)
api_router.include_router(metrics.router)
api_router.include_router(workers.router)
