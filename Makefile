# Two entry points for a fresh clone: `make demo` and `make test`. Each builds
# .venv from the pinned requirements.lock first (Python 3.11 or newer).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lock clean

$(BIN)/efw: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "efw needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(BIN)/efw
	$(BIN)/efw demo

test: $(BIN)/efw
	$(BIN)/python -m pytest

test-fast: $(BIN)/efw
	$(BIN)/python -m pytest -m "not slow"

# Re-pin after changing dependencies in pyproject.toml (needs uv).
lock:
	uv pip compile pyproject.toml --extra test -o requirements.lock

clean:
	rm -rf $(VENV) efw-demo .pytest_cache
