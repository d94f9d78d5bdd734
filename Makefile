# The two commands: `make run` and `make test`. Both work with only Python >= 3.11, gcc and make.
# While working, `make check` is the fast lane: lint, types and the tests not marked slow, browser
# or chaos.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NL := $(VENV)/bin/newsletter
# pytest-xdist workers, one per core by default; each has its own PostgreSQL database, SQLite
# files, var dirs (in /dev/shm when there is one) and embedded Redis, and each test its own Redis
# key prefix (tests/conftest.py).
# WORKERS=0 runs the suite in one process, in file order. worksteal: the long end-to-end tests
# don't leave one worker running alone at the end.
WORKERS ?= auto
XDIST := -n $(WORKERS) --dist worksteal
FAST := not slow and not browser and not chaos

.PHONY: run test check lint bench chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The package's bytecode, written once: an editable install leaves none, and where
# PYTHONDONTWRITEBYTECODE is set (as in this machine's environment) every `newsletter …` process
# would compile the modules it imports again (~70 ms of a `tick`'s start-up).
BYTECODE := $(PY) -m compileall -q newsletter

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	$(BYTECODE)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	$(BYTECODE)
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(NL) init
	$(NL) run

# Debian's Chromium for the browser tests; skipped (with a message) where apt-get can't run.
chromium:
	@[ -x /usr/bin/chromium ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); } || \
	  echo "note: /usr/bin/chromium missing and apt-get unavailable; browser tests will be skipped"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check newsletter tests benchmarks
	$(VENV)/bin/ruff format --check newsletter tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed-dev chromium lint
	$(VENV)/bin/pytest $(XDIST)

check: $(VENV)/.installed-dev lint
	$(VENV)/bin/pytest $(XDIST) -m "$(FAST)"

bench: $(VENV)/.installed-dev
	$(BYTECODE)
	$(PY) benchmarks/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var tests/artifacts
