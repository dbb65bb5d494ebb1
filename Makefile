# Two entry points do the whole set-up on a fresh machine:
#   make demo   - install into .venv and run `stream-gate demo`
#   make test   - install system packages + .venv, lint, and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,train]'
	touch $@

setup: $(VENV)/.installed

system-deps:
	scripts/install-system-deps

demo: setup
	$(VENV)/bin/stream-gate demo

lint: setup
	$(VENV)/bin/ruff check stream_gate trainer tests
	$(VENV)/bin/mypy

# pytest exits 5 when it collects no test; that is not a failure of the project.
test: system-deps setup lint
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
