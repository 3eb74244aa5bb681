# Quick start: `make demo` (train, evaluate and inpaint on the shipped demo data) and `make test`.
# Both create .venv and install the project with PyTorch pinned (constraints.txt) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ctsdg demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ctsdg tests
	$(BIN)/ruff format --check ctsdg tests

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
