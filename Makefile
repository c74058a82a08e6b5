# Sessionizer: `make demo` and `make test` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo up worker lint test bench lock clean

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Locked dependencies first, then the project and its client (editable, no dependency resolution).
$(STAMP): $(VENV)/bin/python requirements.lock pyproject.toml client/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./client
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m devstack demo

up: $(STAMP)
	$(PY) -m devstack up

# One more worker for a running stack, here or on another host: REDIS_URL=<as make up printed> make worker
worker: $(STAMP)
	$(PY) -m devstack worker

# ruff's lint and format checks and mypy (configured in pyproject.toml): zero findings
lint: $(STAMP)
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/mypy

# the lint first: a finding fails the test command before the slow part runs
test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

# The image built and docker-compose.yml run in containers, with podman (docs/operating.md: Containers).
.PHONY: compose-check
compose-check: $(STAMP)
	$(PY) deploy/podman/compose_check.py

# Re-resolve the lock files after changing pyproject.toml (with `uv`, installed here): requirements.lock
# (the service and the test extra: make install) and requirements-runtime.lock (the [project]
# dependencies alone, at the same versions: the Docker image).
lock:
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --python-version 3.11 -c requirements.lock -o requirements-runtime.lock

clean:
	rm -rf $(VENV) var .pytest_cache
