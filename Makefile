# The two commands of the README: `make run` serves, `make test` checks. Both read the V6_ variables
# of the calling environment (see README), e.g. `V6_PORT=8000 make run`.
PYTHON ?= python3.11
VENV ?= .venv
PIP = $(VENV)/bin/pip install -q --disable-pip-version-check
export V6_HOST ?= 127.0.0.1
export V6_PORT ?= 7601

.PHONY: run test lint

# Debian's Python needs the python3-venv package for `-m venv`; installed here when running as root.
$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is needed (or set PYTHON=...)" >&2; exit 1; }
	@if ! $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing python3-venv for '$(PYTHON) -m venv'"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				python3-venv $$(basename $(PYTHON))-venv >/dev/null || exit 1; \
		else \
			echo "'$(PYTHON) -m venv' needs ensurepip: apt-get install python3-venv (as root)" >&2; exit 1; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

$(VENV)/.installed: $(VENV)/bin/python requirements.txt
	$(PIP) -r requirements.txt
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PIP) -r requirements-test.txt
	@touch $@

# Migrate, seed rules and roles, create root on the first start (its password is printed), then serve
# with daphne: V6_WORKERS processes (default 1; with V6_RABBITMQ_URI one per core) on one socket.
run: $(VENV)/.installed
	$(VENV)/bin/python manage.py bootstrap
	exec $(VENV)/bin/python -m vantage6.serve

# The suite runs on a pytest-xdist worker per core (tests/parallel.py); PYTEST_WORKERS=0 runs it serially.
PYTEST_WORKERS ?= auto
test: lint
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The structure checks (pyproject.toml): import contracts (lint-imports) and types (mypy).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

# `make run` with a demo network: three organizations, a collaboration, a node each and a researcher,
# created on the first start; their password and node API keys are printed (`manage.py demo --help`).
.PHONY: demo
demo: $(VENV)/.installed
	$(VENV)/bin/python manage.py bootstrap
	$(VENV)/bin/python manage.py demo
	$(MAKE) run
