# dirconv: `make run` starts the API and one worker on SQLite; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# The web assets (uPlot for the dashboard, Swagger UI for /docs): npm packages, copied where the
# API serves them (git-ignored) by scripts/vendor-assets.sh.
VENDOR := service/web/vendor
VENDOR_STAMP := $(VENDOR)/.installed-stamp

.PHONY: install run test bench bench-store bench-gpu bench-load bench-cancel lint format clean

install: $(STAMP) $(VENDOR_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(VENDOR_STAMP): package.json package-lock.json scripts/vendor-assets.sh
	bash scripts/vendor-assets.sh

run: $(STAMP) $(VENDOR_STAMP)
	mkdir -p data
	$(BIN)/alembic upgrade head
	HOST=$(HOST) PORT=$(PORT) BIN=$(BIN) bash scripts/run.sh

test: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench.engine

bench-store: $(STAMP)
	$(BIN)/python -m bench.store

# On a CUDA device: K = 1, 64, 1024 members as CUDA graphs; without one it says so and exits 0.
bench-gpu: $(STAMP)
	$(BIN)/python -m bench.gpu

# 50 clients against a real API and worker: SQLite, then PostgreSQL when it is reachable.
bench-load: $(STAMP)
	$(BIN)/python -m bench.load

# From POST .../cancel to a running run read back as canceled (the README promises 1 s).
bench-cancel: $(STAMP)
	$(BIN)/python -m bench.cancel

# mypy checks core/ strictly (configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info node_modules $(VENDOR)
