# The commands of README.md. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-integration bench lint typecheck up down status train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(VENV)/.installed  ## create .venv and install the project with its dev extras

# Reinstalled only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: install  ## the main job: stack up, train and promote, score a stream, hot reload
	$(BIN)/python scripts/demo.py

test: install  ## the whole suite: unit, integration (real broker + MLflow), e2e
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: install  ## benchmarks; JSON and plots under bench/results/
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

up: install
	$(BIN)/housing-stack up

down:
	-$(BIN)/housing-stack down

status:
	$(BIN)/housing-stack status

train: install
	$(BIN)/housing-train --promote

clean: down
	rm -rf .stack models/model.pkl models/model.json
