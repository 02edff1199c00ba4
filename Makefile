# The two commands a newcomer needs are `make run` and `make test`; the rest serve them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen

.PHONY: install system-packages browser-packages run migrate test test-unit test-integration test-e2e \
	test-browser test-faults fuzz gen gen-check lint deploy-check format bench clean

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

# Chromium for the browser tests (tests/browser drive Debian's build through Playwright; it never
# downloads a browser of its own): installed with apt-get as root, else it says what to run.
browser-packages:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium with apt-get"; \
	    $(APT_INSTALL) chromium >/dev/null \
	      || { apt-get update >/dev/null && $(APT_INSTALL) chromium >/dev/null; }; \
	  else \
	    echo "The browser tests drive Chromium, and it is missing: sudo apt-get install chromium" \
	      "(they are skipped without it)." >&2; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## run: migrate, build the web app when stale, then start the five services, the facade and the
## web process (Ctrl-C stops them all)
# honcho runs each Procfile line through a shell: the venv first on PATH makes `python` the venv's.
# Without Node, `make web` says in one line what to install and the rest still starts; a failed
# build is reported and the web process serves the last bundle (or a page saying to build it).
run: install migrate
	@$(MAKE) --no-print-directory web \
	  || echo "make run: the web app did not build (see above); starting the rest anyway" >&2
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho --procfile deploy/Procfile --app-root $(CURDIR) start

# Through honcho so a developer's .env reaches the migrations exactly as it reaches the services.
migrate: install
	$(BIN)/honcho --app-root $(CURDIR) run $(PY) -m services.runtime.migrate

## test: the whole suite (unit, integration, e2e, browser) with coverage; the browser tests build
## the web app (make web) when it is stale
# In TEST_WORKERS processes (pytest-xdist), each taking a whole test file at a time: most tests
# wait on servers, sockets and timers, so two workers on two cores take well under the time of
# one (three were faster still, but loaded the machine enough to make timing-bound tests fail).
# TEST_WORKERS=0 runs everything in this one process. A worker that dies ends the run as a
# failure (a replaced worker can leave pytest-xdist waiting forever for a file's tests).
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 0 --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-browser: install
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

## test-faults: the fault suite (tests/faults: a slow service, Redis and PostgreSQL outages, SIGTERM
## and kill -9 under load, each on private PostgreSQL and Redis); prints its results table
test-faults: install
	STOCKFOLIO_FAULTS=1 $(PY) -m pytest tests/faults $(PYTEST_ARGS)

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

## deploy-check: every Kubernetes manifest, compose.yaml and the environment, checked offline
deploy-check: install
	$(PY) tools/deploy_check.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(PY) -m bench
	$(PY) -m bench.health
	$(PY) -m bench.web

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage

include web/web.mk
