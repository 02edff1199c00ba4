# The two commands a newcomer needs are `make run` and `make test`; the rest serve them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen

.PHONY: install system-packages run migrate test test-unit test-integration test-e2e fuzz gen gen-check lint format bench clean

install: system-packages $(VENV)/.installed

# bubblewrap, the sandbox of every user shell and git command, and prlimit (util-linux) for its
# rlimits: installed with apt-get when this runs as root; otherwise it says exactly what to run.
SYSTEM_PACKAGES := bubblewrap util-linux
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
system-packages:
	@if ! command -v bwrap >/dev/null 2>&1 || ! command -v prlimit >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
	    $(APT_INSTALL) bubblewrap util-linux >/dev/null \
	      || { apt-get update >/dev/null && $(APT_INSTALL) bubblewrap util-linux >/dev/null; }; \
	  else \
	    echo "Stockfolio runs every user shell and git command in a bubblewrap sandbox, and" \
	      "bwrap or prlimit is missing. Install them, then run make again:" \
	      "sudo apt-get install $(SYSTEM_PACKAGES) (Fedora: sudo dnf install bubblewrap)." \
	      "TERMINAL_SANDBOX=off runs shells unsandboxed, for development only." >&2; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## run: migrate, then start the five services and the facade (Ctrl-C stops them all)
# honcho runs each Procfile line through a shell: the venv first on PATH makes `python` the venv's.
run: install migrate
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho --procfile deploy/Procfile --app-root $(CURDIR) start

# Through honcho so a developer's .env reaches the migrations exactly as it reaches the services.
migrate: install
	$(BIN)/honcho --app-root $(CURDIR) run $(PY) -m services.runtime.migrate

## test: the whole suite (unit, integration, e2e) with coverage
test: install
	$(PY) -m pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

## fuzz: Schemathesis against the started system, as a fresh user (tools/fuzz.py; FUZZ_ARGS=--help)
fuzz: install
	$(PY) tools/fuzz.py $(FUZZ_ARGS)

gen: install
	$(PY) tools/genproto.py

gen-check: install
	$(PY) tools/genproto.py --check

lint: install gen-check web-client-check web-lint
	$(PY) tools/genproto.py --lint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

include web/web.mk
