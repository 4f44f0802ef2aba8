# Two commands (see README.md):
#   make test   create .venv if missing, install, run every test (unit tests, nbval over the chapters, the built book in a browser)
#   make book   create .venv if missing, install, build the HTML book into _build/html
#   make course the course edition into _build/course (student labs, autograders, solutions, student chapters)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rpbook-installed

.PHONY: test book course clean clean-cache bench help

help:
	@echo "make test   - install into .venv (if needed) and run every test"
	@echo "make book   - install into .venv (if needed) and build the book into _build/html"
	@echo "make course - build the course edition into _build/course (see book/instructor_guide.md)"
	@echo "make bench  - run the benchmarks in benchmarks/ (prints measured ratios)"
	@echo "make clean-cache - forget executed notebooks (do this after changing rpbook/)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The quick-profile results nbval produces go to a throwaway store, never into book/_results.
test: $(STAMP)
	rm -rf _build/test-results
	RPBOOK_EXECUTOR=serial RPBOOK_PROFILE=quick RPBOOK_RESULTS=$(CURDIR)/_build/test-results TQDM_DISABLE=1 $(BIN)/python -m pytest

book: $(STAMP)
	RPBOOK_PROFILE=standard TQDM_DISABLE=1 $(BIN)/jupyter-book build . -W -n --keep-going

# Student notebooks, autograder zips, executed solutions (HTML) and student chapters; fails if a
# reference solution misses a point or book/assignments/ is out of date with book/labs/.
course: $(STAMP)
	TQDM_DISABLE=1 $(BIN)/python -m rpbook.course build --out _build/course

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-cache:
	rm -rf _build/.jupyter_cache

clean:
	rm -rf _build
