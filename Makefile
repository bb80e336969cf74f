# ALP developer commands. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
# the packages `make typecheck` checks with mypy (settings: [tool.mypy] in pyproject.toml)
TYPECHECK_PACKAGES ?= alp_core alp_objectives alp_train

.PHONY: help install run test lint typecheck format bench bench-compare clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install:  ## create .venv with pinned torch/torchaudio and every package in editable mode (+ dev tools)
	scripts/setup.sh dev

run:  ## set up, then run the embedded default end to end (alp run)
	scripts/setup.sh
	$(VENV)/bin/alp run

test: typecheck  ## set up, type-check, then run the whole test suite
	$(PY) -m pytest

lint: install  ## ruff
	$(VENV)/bin/ruff check packages tests benchmarks examples

typecheck: install  ## mypy over TYPECHECK_PACKAGES
	$(VENV)/bin/mypy $(addprefix -p ,$(TYPECHECK_PACKAGES))

format: install  ## ruff format + fixes
	$(VENV)/bin/ruff check --fix packages tests benchmarks examples

bench: install  ## data-loader and training-step benchmarks; JSON saved under .benchmarks/
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-autosave $(BENCH_ARGS)
	$(PY) benchmarks/summary.py

bench-compare: install  ## run the benchmarks again and compare with the last saved run
	$(MAKE) bench BENCH_ARGS=--benchmark-compare

clean:  ## remove runs/ and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
