"""The HTTP routers, gathered in one place: open ones, and the rest behind `authorize`."""

from fastapi import APIRouter, Depends

from service.api import dashboard, experiments, health, metrics, sweeps, theory, tokens, workers
from service.api.auth import authorize
from service.api.errors import documented

# Any request may be too big, find the database down, or come from a Host not allowed.
api_router = APIRouter(responses=documented(400, 413, 503))
api_router.include_router(health.router)
api_router.include_router(dashboard.router)

# Every route here needs a token with auth on: a new route is protected unless it is added
# above, on purpose.
protected = APIRouter(dependencies=[Depends(authorize)], responses=documented(401, 403, 429))
protected.include_router(experiments.router)
protected.include_router(metrics.router)
protected.include_router(sweeps.router)
protected.include_router(theory.router)
protected.include_router(metrics.compare_router)
protected.include_router(workers.router)
protected.include_router(tokens.router)
protected.include_router(tokens.me_router)
api_router.include_router(protected)
