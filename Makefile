# The two commands of the README: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test soak check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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

check: $(STAMP)
	$(BIN)/ruff check connectra tests bench examples
	$(BIN)/ruff format --check connectra tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .connectra
