# One image for the API and the worker. Each step here is one the Makefile runs on a host.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/dirconv.db
COPY pyproject.toml README.md alembic.ini ./
COPY core ./core
COPY service ./service
COPY worker ./worker
COPY dirconv ./dirconv
COPY alembic ./alembic
RUN python -m pip install --no-cache-dir -e .
EXPOSE 8000
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000"]
