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

# the tests that start no processes of their own run in TEST_WORKERS pytest-xdist workers (a
# file's tests stay together, so module fixtures are built once); the multi-process ones
# (marker `distributed`, two processes each) then run in DIST_WORKERS workers, two files at
# a time: much of their time is process start-up and waiting on each other (on two cores:
# 61 of them in 5 min 9 s two at a time; 58 in 6 min 36 s one at a time). One torch thread
# per process (unless OMP_NUM_THREADS says otherwise): more would oversubscribe the cores.
TEST_WORKERS ?= 2
DIST_WORKERS ?= 2
TEST_THREADS = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}

test: typecheck  ## set up, type-check, then run the whole test suite
	$(TEST_THREADS) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not distributed"
	$(TEST_THREADS) $(PY) -m pytest -n $(DIST_WORKERS) --dist loadfile -m distributed

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
