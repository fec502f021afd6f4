# bookcover: `make run` runs the pipeline, `make test` checks everything,
# `make test-fast` everything that runs no pipeline and trains no model (minutes).
# Both create .venv on first use from the pinned requirements.lock.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test test-fast lint format bench lock clean

# Python 3.10 from PATH when it really runs (a pyenv shim may not), else from pyenv.
find_python310 = $(shell \
  if python3.10 -c 'import sys' >/dev/null 2>&1; then command -v python3.10; \
  else ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V | tail -n 1; fi)

# The recipe is part of what the venv is made from (Makefile).
# --compile-bytecode: uv writes no .pyc files by default, and where PYTHONDONTWRITEBYTECODE
# is set (as on these machines) Python then compiles every module on every import:
# importing TensorFlow took 13.6 s instead of 3.6 s, in every process and Beam worker.
$(STAMP): requirements.lock pyproject.toml Makefile
	@py="$(find_python310)"; \
	if [ -z "$$py" ]; then \
	  echo "bookcover needs Python 3.10 (TFX 1.16 supports no other). Install it, e.g." >&2; \
	  echo "  pyenv install 3.10.13   or   apt-get install python3.10 python3.10-venv" >&2; \
	  exit 1; \
	fi; \
	echo "creating $(VENV) with $$py"; \
	rm -rf $(VENV) && "$$py" -m venv $(VENV) && \
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	$(UV) pip install --python $(PY) --no-deps --compile-bytecode -r requirements.lock && \
	$(UV) pip install --python $(PY) --no-deps -e . && \
	touch $(STAMP)

run: $(STAMP)
	$(PY) local_runner.py $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(ARGS)

test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -m "not pipeline" $(ARGS)

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# Re-resolves the dependencies; commit the new requirements.lock.
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra test --python-version 3.10 -o requirements.lock

clean:
	rm -rf outputs .pytest_cache .ruff_cache
