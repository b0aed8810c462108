# Two commands for a newcomer (see README): `make demo` and `make test`.
# Each creates .venv with the first Python >= 3.11 on the PATH (python3.13, python3.12,
# python3.11, python3, in that order; `make PYTHON=/path/to/python` picks one) and installs
# what it needs first.
FIND_PYTHON = for p in python3.13 python3.12 python3.11 python3; do \
	  if $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then echo $$p; break; fi; \
	done
PYTHON ?= $(shell $(FIND_PYTHON))
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest workers for `make test` (pytest-xdist); each starts its own embedded broker. 0: no workers.
# 3 on 2 cores: the stream tests mostly wait on subprocesses (joins, restarts, timeouts), so a third
# worker fills the idle CPU (tests27, quiet machine: -n 2 551 s, -n 3 415 s of pytest).
TEST_WORKERS ?= 3

.PHONY: demo test lint bench setup clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python >= 3.11 on the PATH (tried python3.13, python3.12," \
	  "python3.11, python3); install one, or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/viraltrend demo

# Every process of a test run (pytest's workers, the services and CLIs they start) shares one numba
# cache, the benchmarks' (benchmarks/_common.py keeps a NUMBA_CACHE_DIR already set), and the kernels
# are compiled into it once before the workers start: a fresh checkout compiles for about a minute of
# CPU per process that misses, and a service compiling under a test's deadline can miss it.
TEST_CACHE := $(CURDIR)/benchmarks/out/numba-cache

test: $(STAMP) lint
	@echo "make: compiling the numba kernels into $(TEST_CACHE) (a minute or two on a fresh checkout)"
	@d=$$(mktemp -d) && export NUMBA_CACHE_DIR=$(TEST_CACHE) \
	  && $(BIN)/viraltrend simulate --events 20000 --products 2000 --out $$d >/dev/null \
	  && $(BIN)/viraltrend replay $$d/events.ndjson --out $$d/decisions.ndjson --no-progress >/dev/null; \
	  rc=$$?; rm -rf $$d; exit $$rc
	NUMBA_CACHE_DIR=$(TEST_CACHE) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check viraltrend tests benchmarks
	$(BIN)/ruff format --check viraltrend tests
	$(BIN)/mypy viraltrend

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
