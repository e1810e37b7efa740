# The two commands of the README. Both honour the V6_ variables of the calling environment.
PYTHON ?= python3.11
VENV ?= .venv
V6_HOST ?= 127.0.0.1
V6_PORT ?= 7601

.PHONY: run test lint

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is needed (set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/python manage.py bootstrap
	$(VENV)/bin/daphne -b $(V6_HOST) -p $(V6_PORT) vantage6.asgi:application

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
