# Two commands a new machine needs: `make demo` and `make test`. Each installs what it needs
# into .venv (only Python 3.11+ and make are assumed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGIN_DIRS  := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
EXAMPLE_DIRS := $(sort $(dir $(wildcard examples/*/pyproject.toml)))
STAMP  := $(VENV)/.installed
# Each plugin's source package, named from its folder (plugins/slack -> empathy_webhooks_slack):
# never a glob, which would also match the *.egg-info folders an editable install leaves.
PLUGIN_PACKAGES := $(foreach d,$(PLUGIN_DIRS),$(d)empathy_webhooks_$(notdir $(patsubst %/,%,$(d))))

.PHONY: install chromium demo test lint typecheck pytest bench docs clean console-screenshots

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml)
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]" $(foreach d,$(PLUGIN_DIRS),-e $(d)) $(foreach d,$(EXAMPLE_DIRS),-e $(d))
	touch $(STAMP)

install: $(STAMP) chromium

# The console's browser tests drive Debian's Chromium (Playwright's own browser download is
# not used). Installed with apt-get when missing, if there is apt-get and we are root;
# otherwise (or if apt-get cannot reach its mirrors) those tests skip and say why.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium for the console's browser tests (apt-get)"; \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
			|| echo "chromium could not be installed: the console's browser tests will skip"; \
	fi

# The demo needs no browser: only the package.
demo: $(STAMP)
	$(BIN)/empathy-webhooks demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy empathy_webhooks_core $(PLUGIN_PACKAGES)

# The whole suite on three workers per core (pytest-xdist): many tests wait (child processes
# stopped past a lease, slow answers, private servers starting), and the extra workers run
# CPU-bound tests meanwhile: 2 min 0-5 s against 2 min 40 s with one worker per core (two
# runs each, stop 34); with mypy beside it on a cold cache, as on a fresh clone, 3 min 5 s with
# six workers against 3 min 26 s with four and 3 min 19 s with eight (stop 39, a 2-core
# machine a fifth slower than stop 36's, where four had made 2 min 42 s).
# One test at a time per worker (--maxschedchunk 1), so the slow tests, which tests/conftest.py
# hands out first, never leave one worker busy at the end.
#
# Bytecode caches are written even where the environment sets PYTHONDONTWRITEBYTECODE, as this
# machine and many CI images do: without them each xdist worker and each pytest a test starts
# re-rewrites the asserts of ~450 modules (pytest, hypothesis, the packages), about 10 s of CPU
# per worker and 3 s per pytest subprocess, every run. They go where Python puts them by
# default: the venv's own (pip compiled every installed module at `make install`) and
# __pycache__ beside the tree's sources (ignored by git, removed by `make clean`). A
# PYTHONPYCACHEPREFIX would ignore pip's and compile ~3,200 modules again (the standard
# library's too) on the first run of a fresh clone, each xdist worker racing the other.
PYTEST_WORKERS := $(shell $(PYTHON) -c 'import os; print(3 * len(os.sched_getaffinity(0)))' 2>/dev/null || echo auto)
PYTEST_ENV := PYTHONDONTWRITEBYTECODE=
pytest: install
	$(PYTEST_ENV) $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --maxschedchunk 1

# Type checking runs beside the suite: the suite leaves a core idle while it waits on servers and
# subprocesses, and mypy with a cold cache (a fresh clone) takes half a minute of one core.
test: lint
	$(MAKE) --no-print-directory -j2 typecheck pytest

# The console's screenshots in docs/console.md: the browser tests, saving each screenshot
# into docs/images/console/ as well as their temporary folder.
console-screenshots: install
	EMPATHY_WEBHOOKS_SCREENSHOTS=$(CURDIR)/docs/images/console $(BIN)/python -m pytest -q -p no:xdist tests/test_console_browser.py

# The documentation site (MkDocs + mkdocstrings) in build/site; every warning is an error.
docs: install
	$(BIN)/mkdocs build --strict

# Every benchmark (a few minutes; `make bench BENCH_ARGS=--quick` for a small run): prints each
# figure with its goal, then writes benchmarks/README.md's table and benchmarks/results.png.
# The `bench` extra (Celery, requests, matplotlib) is installed for it, never for the library.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# What an install, a build or a test run leaves (each is in .gitignore): the virtual
# environment, every project's build/, dist/ and *.egg-info, and the caches wherever they are.
# Never a user's own files (an outbox.db, a webhooks.toml).
PROJECT_DIRS := ./ $(PLUGIN_DIRS) $(EXAMPLE_DIRS)
CACHE_DIRS   := __pycache__ .mypy_cache .ruff_cache .pytest_cache .hypothesis

clean:
	rm -rf $(VENV) $(foreach d,$(PROJECT_DIRS),$(d)build $(d)dist $(d)*.egg-info)
	find . -path ./.git -prune -o -type d \( $(foreach c,$(CACHE_DIRS),-name $(c) -o) -false \) \
		-prune -exec rm -rf {} +
