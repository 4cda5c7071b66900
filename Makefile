# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup tools demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# promtool (tests/infra/test_prometheus.py) from Debian's prometheus package: only its
# binaries are run, never the service. Where apt cannot install it, those tests say so and
# skip (they fail under CI, which must have it).
tools:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || echo "promtool not installed"

demo: $(STAMP)
	$(BIN)/darkroom demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests run in parallel (pytest-xdist): most of their time is spent waiting on brokers and
# rebalances, not computing (a four-worker run, beside other work, used about 300
# CPU-seconds in 490 s on two cores), so eight workers share two cores; idle workers take
# tests from busy ones (worksteal).
PYTEST := $(BIN)/python -m pytest -n 8 --dist worksteal

test: lint tools
	$(PYTEST) -m "not slow"

test-all: lint tools
	$(PYTEST)

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
