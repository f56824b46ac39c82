# book.mk — the book's targets, included by the main Makefile, which defines
# VENV, PY (the project's Python), QUARTO (system quarto, else .venv/bin/quarto),
# exports QUARTO_PYTHON, and builds the environment ($(VENV)/.installed-*).
#
#   make book      full book, HTML + PDF (Typst), from the run store; trains only missing runs
#   make pdf       the PDF alone
#   make preview   live HTML preview of the full book
#   make quick     drafting profile, tiny budgets, rendered in a scratch copy into _book-quick/
#   make publish   full book to GitHub Pages (branch gh-pages)
#   make rebuild   retrain everything into a fresh store and compare with data/runs/full/

BOOK_DIR      := _book
QUICK_DIR     := _book-quick
QUICK_SCRATCH := build/quick
REBUILD_DIR   := build/rebuild
# A kernel reused by Quarto's daemon keeps the environment (and profile) it
# started with: never reuse one across renders.
RENDER_FLAGS  := --no-execute-daemon

.PHONY: book pdf preview quick publish rebuild

# The environment (and Quarto, when the system has none) comes from the main Makefile.
book pdf preview quick publish: $(VENV)/.installed-book
rebuild: $(VENV)/.installed-test

book:
	$(QUARTO) render $(RENDER_FLAGS)
	$(PY) -m labkit.quarto notebooks $(BOOK_DIR)

pdf:
	$(QUARTO) render --to typst $(RENDER_FLAGS)

preview:
	$(QUARTO) preview

# Rendering the quick profile in the working tree would delete the full book's
# frozen results (see _quarto-quick.yml): render a copy of the sources, with
# the run store and datasets of this checkout, and bring its output back.
quick:
	$(PY) -m labkit.quarto copy-project $(QUICK_SCRATCH)
	LABKIT_RUNS_DIR="$${LABKIT_RUNS_DIR:-$(CURDIR)/data/runs}" \
	LABKIT_DATA_DIR="$${LABKIT_DATA_DIR:-$(CURDIR)/data}" \
	  $(QUARTO) render $(QUICK_SCRATCH) --profile quick $(RENDER_FLAGS)
	rm -rf $(QUICK_DIR)
	mv $(QUICK_SCRATCH)/$(QUICK_DIR) $(QUICK_DIR)
	$(PY) -m labkit.quarto notebooks $(QUICK_DIR)

publish: book
	$(QUARTO) publish gh-pages --no-render --no-prompt

rebuild:
	rm -rf $(REBUILD_DIR)
	$(PY) -m labkit.book rebuild --out $(REBUILD_DIR)
