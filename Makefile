# Every target sets itself up: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
DEMO_OUT ?= demo_out
SITE ?= site

.PHONY: install install-docs test test-fast docs docs-check demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The docs extra (mkdocs, Material, mkdocstrings, mkdocs-click) on top of the package.
install-docs: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(DOCS_STAMP)

# What CI runs (.ci/run): the strict docs build (a warning or a broken link fails, ~15 s), then
# the test suite with the package's doctests (setup.cfg: testpaths and --doctest-modules).
test: install install-docs docs-check
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# Material's start-up banner about its successor (Zensical) is not a build warning: keep it out of the logs.
docs docs-check: export NO_MKDOCS_2_WARNING = 1

# The documentation site in $(SITE)/ (open $(SITE)/index.html, or `.venv/bin/mkdocs serve`).
docs: install-docs
	$(BIN)/mkdocs build --strict --site-dir $(SITE)

# The strict build alone, into a throw-away folder (part of `make test`). Not --quiet: with it
# mkdocs does not see the warnings, and --strict lets them pass.
docs-check: install-docs
	tmp=$$(mktemp -d) && $(BIN)/mkdocs build --strict --site-dir "$$tmp"; rc=$$?; rm -rf "$$tmp"; exit $$rc

demo: install
	$(BIN)/mssoft demo --out $(DEMO_OUT) --overwrite

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(SITE) .pytest_cache *.egg-info
