# The two commands of the README: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test soak check bench clean

# One locked dependency set, uv.lock, for this venv and for the image (Dockerfile). `uv sync
# --locked` installs exactly the locked versions, checked against their hashes, and stops when
# uv.lock no longer matches pyproject.toml: after changing the dependencies, run
# `.venv/bin/uv lock` and commit uv.lock. `--inexact` keeps pip and uv itself, which the lock
# does not list. uv is pinned here and in the Dockerfile (UV_VERSION, the same).
UV_VERSION := 0.13.9
UV_SYNC := env UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON_DOWNLOADS=never \
	$(BIN)/uv sync --locked --inexact --extra dev --python $(BIN)/python --quiet

$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/uv --version 2>/dev/null | grep -q '^uv $(UV_VERSION) ' || \
		$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(UV_SYNC)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/connectra run

# Tests run in parallel worker processes (pytest-xdist): much of their time is spent waiting on
# subprocesses, PostgreSQL and sockets. TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3
# Bytecode is kept under .venv even where PYTHONDONTWRITEBYTECODE is set: without it each
# worker redoes pytest's assertion rewriting of some 450 modules (about 5 CPU-seconds).
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache

test: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS)

# The soak test (tests/soak, about 70 s), left out of `make test`; CI runs both.
soak: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest -m soak tests/soak

# Last, the documentation site (mkdocs.yml) builds with no warning (--strict); Material's
# notice of its own end of life is not one.
check: $(STAMP)
	$(BIN)/ruff check connectra tests bench examples scripts
	$(BIN)/ruff format --check connectra tests bench examples scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(abspath $(VENV))/site

clean:
	rm -rf $(VENV) .connectra
