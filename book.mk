# book.mk — the book's targets, included by the main Makefile (which defines VENV, PY,
# PIP_INSTALL and builds the environment, $(VENV)/.installed-test).
#
#   make book      full book: the site (_book/index.html) and the PDF (_book/*.pdf, Typst)
#   make pdf       the PDF alone
#   make preview   live HTML preview of the full book
#   make quick     drafting profile, tiny budgets, rendered in a scratch copy into _book-quick/
#   make check     the book's static checks and its PDF proxy, without Quarto (seconds)
#   make publish   full book to GitHub Pages (branch gh-pages)
#   make rebuild   retrain every run into a fresh store and compare with data/runs/full/

BOOK_DIR      := _book
QUICK_DIR     := _book-quick
QUICK_SCRATCH := build/quick
REBUILD_DIR   := build/rebuild

# -- Quarto ---------------------------------------------------------------------------
# QUARTO=/path/to/quarto when given (an empty QUARTO= counts as not given), else `quarto`
# on PATH, else the one the [book] extra installs into the venv (PyPI quarto-cli, whose
# build downloads Quarto: it needs the network).
QUARTO_BIN := $(or $(QUARTO),$(shell command -v quarto 2>/dev/null),$(abspath $(VENV)/bin/quarto))
# Quarto's Jupyter engine (and the pre-render script) must run the venv's Python, which has labkit.
export QUARTO_PYTHON := $(abspath $(PY))
QUARTO_MISSING := Quarto is missing: make book needs Quarto >= 1.10. Install it from \
https://quarto.org/docs/get-started/ or point make at one: make book QUARTO=/path/to/quarto \
(the [book] extra, PyPI quarto-cli, could not be installed here: it downloads Quarto while \
it installs; pip's log is build/quarto-install.log).

# -- Execution: once per format, in one kept-alive kernel per chapter -----------------
# A render of HTML + Typst executes every chapter once per format (frozen results are kept
# per format; `execute: cache` cannot hold inline values).  What can be shared soundly is the
# kernel: with a daemon, Quarto keeps one kernel per document, found by the real path of the
# notebook it executes (chapters/NN-….quarto_ipynb, the same for both formats), so the
# Typst execution reuses the kernel the HTML execution started: Keras, JAX and labkit are
# imported once per chapter, and Quarto's setup cell (%reset) still runs every cell anew.
# Quarto turns the daemon on by itself only in interactive, non-CI sessions; here it is
# forced, for 60 s of idleness (enough between a chapter's two executions, short enough
# that the next `make` rarely meets it).  A kept kernel keeps the environment it started
# with: LABKIT_* variables changed within 60 s of a render are not seen by it (wait, or
# RENDER_FLAGS=--no-execute-daemon).  Profiles never share a kernel: `make quick` renders
# another path (build/quick).  Executing each chapter once into a notebook both formats
# render (chapters listed as .ipynb) was not chosen: it changes the book's sources, page
# names and freeze, and cannot be checked without Quarto here.
RENDER_FLAGS ?= --execute-daemon 60

.PHONY: quarto book pdf preview quick check publish rebuild

# Finds Quarto, or installs the [book] extra, or says in one message how to get Quarto.
quarto: $(VENV)/.installed-test
	@if [ -x "$(QUARTO_BIN)" ]; then exit 0; fi; \
	mkdir -p build; \
	if $(PIP_INSTALL) -e ".[book]" >build/quarto-install.log 2>&1 && [ -x "$(QUARTO_BIN)" ]; then \
	  echo "Quarto installed in $(VENV)/bin (PyPI quarto-cli)"; \
	else echo "$(QUARTO_MISSING)" >&2; exit 1; fi

book: quarto
	$(QUARTO_BIN) render $(RENDER_FLAGS)

pdf: quarto
	$(QUARTO_BIN) render --to typst $(RENDER_FLAGS)

preview: quarto
	$(QUARTO_BIN) preview

# Rendering the quick profile in the working tree would delete the full book's frozen
# results (see _quarto-quick.yml): render a copy of the sources, with this checkout's run
# store and datasets, and bring its output back.
quick: quarto
	$(PY) tools/scratch.py $(QUICK_SCRATCH)
	LABKIT_RUNS_DIR="$${LABKIT_RUNS_DIR:-$(CURDIR)/data/runs}" \
	LABKIT_DATA_DIR="$${LABKIT_DATA_DIR:-$(CURDIR)/data}" \
	  $(QUARTO_BIN) render $(QUICK_SCRATCH) --profile quick $(RENDER_FLAGS)
	rm -rf $(QUICK_DIR)
	mv $(QUICK_SCRATCH)/$(QUICK_DIR) $(QUICK_DIR)

check: $(VENV)/.installed-test
	$(PY) tools/bookcheck.py
	$(PY) tools/pdfproxy.py

publish: book
	$(QUARTO_BIN) publish gh-pages --no-render --no-prompt

# tools/rebuild.py retrains into build/rebuild/store and compares; a stopped rebuild resumes
# (delete build/rebuild for a clean one).
rebuild: $(VENV)/.installed-test
	$(PY) tools/rebuild.py --out $(REBUILD_DIR)
