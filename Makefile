# The commands of README.md. Everything runs from the project's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# `make test` measures line and branch coverage ([tool.coverage.run]) and enforces scripts/coverage_floors.toml.
COVERAGE_ARGS ?= --cov --cov-report=term --cov-report=json:coverage.json
MUTATE_CHILDREN ?= 2

.PHONY: install demo test test-unit test-integration mutate bench lint typecheck up down status train clean

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

test: install  ## the whole suite: unit, integration (real broker + MLflow), e2e; coverage floors enforced
	$(BIN)/pytest $(COVERAGE_ARGS) $(PYTEST_ARGS)
	$(BIN)/python scripts/coverage_floors.py coverage.json

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

mutate: install  ## mutation testing of the pure code (slow, not in CI): rewrites docs/mutation-report.md
	nice -n 19 $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN)
	nice -n 19 $(BIN)/python scripts/mutation_report.py --rerun-survivors --max-children $(MUTATE_CHILDREN)

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
