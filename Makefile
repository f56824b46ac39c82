# Two commands on a fresh clone:  `make book` (the book) and `make test` (the tests).
# Everything runs in .venv, created on first use from the pinned requirements.lock.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# A system-wide quarto is used when present, else the one the `book` extra installs.
QUARTO := $(shell command -v quarto 2>/dev/null || echo $(VENV)/bin/quarto)
# Quarto's Jupyter engine must find the kernel that has labkit: the venv's python.
export QUARTO_PYTHON := $(abspath $(PY))
export KERAS_BACKEND := jax

.PHONY: test venv doctor bench clean-venv

# pip byte-compiles every module at install (a minute here): keep it.  With --no-compile, a
# machine that sets PYTHONDONTWRITEBYTECODE (this one does) recompiles jax, keras, scipy… from
# source in every process: 18 s per import instead of 5, the test suite 7 -> 11 min.
PIP_INSTALL := $(PY) -m pip install --quiet -c requirements.lock

$(VENV)/.installed-test: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e ".[test]"
	touch $@

$(VENV)/.installed-book: $(VENV)/.installed-test
	@if command -v quarto >/dev/null 2>&1; then echo "using system quarto: $$(command -v quarto)"; \
	else $(PIP_INSTALL) -e ".[book]"; fi
	touch $@

venv: $(VENV)/.installed-test

## make test: create the environment, install labkit with its test extra, run the tests
## (-n auto: one test process per core, pytest-xdist; PYTEST_ARGS="-n 0" runs them in one process)
test: $(VENV)/.installed-test
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

doctor: $(VENV)/.installed-test
	$(VENV)/bin/labkit doctor

## make bench: the speed benchmark (ratios; see README, Performance)
bench: $(VENV)/.installed-test
	$(PY) bench/run.py

clean-venv:
	rm -rf $(VENV)

-include book.mk
