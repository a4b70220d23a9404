# Every target creates or refreshes .venv by itself: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bridge demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bridge sandbox tests bench
	$(BIN)/mypy

# Browser tests drive Debian's Chromium. As root (CI) it is installed when missing; elsewhere
# the browser tests are skipped, with a word on how to get it.
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no chromium: browser tests will be skipped (Debian/Ubuntu: sudo apt-get install chromium)"; fi

test: $(STAMP) lint browser-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

# `make bench BENCH_ARGS="sync --quick"`: one bench, short (see bench/bench_sync.py).
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist .bridge-data
