# syntax=docker/dockerfile:1
# Four stages, built by docker-compose.yml (`target:`), or alone with `docker build --target X`:
#   assets      Node: `npm ci` and the copy of uPlot and Swagger UI (scripts/vendor-assets.sh)
#   api         the API, client and core, with those assets; no torch, no numba, no worker code
#   worker-cpu  the worker with torch's CPU build (a few hundred MB, not the CUDA one)
#   worker-gpu  the worker with torch's CUDA build from PyPI (its CUDA libraries come as wheels;
#               the host needs the NVIDIA driver and the NVIDIA Container Toolkit)
# Each step is one the Makefile runs on a host. .dockerignore keeps host state out of the context.

FROM node:22-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/vendor-assets.sh ./scripts/
RUN bash scripts/vendor-assets.sh

FROM python:3.11-slim-bookworm AS python-base
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/dirconv.db
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY core ./core
COPY service ./service
COPY dirconv ./dirconv

FROM python-base AS api
COPY --from=assets /src/service/web/vendor ./service/web/vendor
RUN python -m pip install -e . \
    && ! python -c "import torch" 2>/dev/null \
    && ! python -c "import numba" 2>/dev/null
EXPOSE 8000
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]

FROM python-base AS worker-base
# numba's compiled kernels: filled at build (python -m worker.warmup) so a container's worker
# starts stepping at once instead of compiling for 10-30 s; the directory stays writable.
ENV NUMBA_CACHE_DIR=/var/cache/dirconv/numba
COPY worker ./worker

FROM worker-base AS worker-cpu
# Only PyTorch's CPU index has 2.13.0+cpu (its dependencies come from the default index); the
# pin torch==2.13.0 in pyproject.toml accepts it, so the next install keeps it.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m pip install --extra-index-url "$TORCH_CPU_INDEX" "torch==2.13.0+cpu" \
    && python -m pip install -e ".[worker]" \
    && python -c "import torch; assert torch.version.cuda is None, torch.version.cuda" \
    && python -m worker.warmup
CMD ["python", "-m", "worker"]

FROM worker-base AS worker-gpu
# What the NVIDIA Container Toolkit exposes of the driver: CUDA compute and nvidia-smi.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN python -m pip install -e ".[worker]" \
    && python -c "import torch; assert torch.version.cuda is not None, 'not a CUDA build'" \
    && python -m worker.warmup
CMD ["python", "-m", "worker"]
