# One-command set-up: `make demo` and `make test` each run `setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Debian packages used by the recipes (corpus builders); installed when we are root with apt-get.
# The translation corpus reads the message catalogs of a pinned package list.
APT_PACKAGES ?= espeak-ng sox alsa-utils wordnet-base dataset-fashion-mnist chromium \
	$(shell grep -v '^\#' recipes/translation/catalog_packages.txt)
EXTRAS ?= dev,pretrained,export
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)-$(subst $(comma),_,$(EXTRAS))
comma := ,

.PHONY: setup apt demo test test-slow bench lint format clean

setup: apt $(STAMP)

apt:
	@bash .ci/apt.sh $(APT_PACKAGES)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# Every landed recipe x two attention types on short budgets, then report/index.html.
demo: setup
	$(PY) -m toolkit.compare profile=quick

# The fast suite on TEST_WORKERS processes (pytest-xdist; TEST_WORKERS=0: one process). A
# test file goes to one worker as a whole (its module-scoped fixtures, such as trained tiny
# checkpoints, are built once), in collection order: the long end-to-end files first, the
# many short unit files last, so both workers finish at about the same time.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup
	$(PY) -m pytest -m "not slow" -q --durations=30 $(XDIST)

test-slow: setup
	$(PY) -m pytest -m slow -q

bench: setup
	$(PY) benchmarks/attention.py --out runs/bench

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs outputs multirun report .pytest_cache
