# Two commands on a fresh clone:  `make book` (the book) and `make test` (the tests).
# Everything runs in .venv, created on first use from the pinned requirements.lock.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
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

venv: $(VENV)/.installed-test

## make test: create the environment, install labkit with its test extra, run the tests
## (-n auto: one test process per core, pytest-xdist; PYTEST_ARGS="-n 0" runs them in one process)
test: $(VENV)/.installed-test
	$(PY) -m pytest -n auto $(PYTEST_ARGS)

## make doctor: what labkit finds (datasets, stores, workers); labkit/cli.py
doctor: $(VENV)/.installed-test
	$(VENV)/bin/labkit doctor

## make bench: the speed benchmark (ratios; see README, Performance); bench/
bench: $(VENV)/.installed-test
	$(PY) bench/run.py

clean-venv:
	rm -rf $(VENV)

-include book.mk
