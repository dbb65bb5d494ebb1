# Two entry points do the whole set-up on a fresh machine:
#   make demo   - install into .venv and run `stream-gate demo`
#   make test   - install system packages + .venv, lint, and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint lock clean

# Every package comes from requirements.txt (pinned, with hashes), the project itself
# without build isolation, so nothing is resolved from what the index serves that day.
# `make lock` re-resolves it (then run the tests before committing the new lock).
$(VENV)/.installed: pyproject.toml requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		-e .
	touch $@

setup: $(VENV)/.installed

system-deps:
	scripts/install-system-deps

demo: setup
	$(VENV)/bin/stream-gate demo

lint: setup
	$(VENV)/bin/ruff check stream_gate trainer tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lock: setup
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--extra dev --extra train --no-emit-index-url --no-emit-find-links \
		-o requirements.txt pyproject.toml

# pytest exits 5 when it collects no test; that is not a failure of the project.
test: system-deps setup lint
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
