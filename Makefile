# Two commands matter: `make test` and `make book`. Both create .venv/ on first use.
# Everything is pinned in requirements.lock (torch==2.13.0, the CPU build).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
PARAMS ?= params/quick.yml
NAME   ?=
# Chapters written ahead of their stored runs (none today): `make test` executes and builds
# them with the quick parameters; `make book` builds them once they join _toc.yml.
DRAFTS :=
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Two cores: let torch use both, but never oversubscribe through BLAS threads.
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2

.PHONY: venv test test-lib test-book book chapter bench clean help

help:
	@echo "make test    - create .venv, run library tests, validate every chapter and draft (quick parameters), strict book build"
	@echo "make book    - execute every chapter with the book's parameters and build HTML into _build/html (FORCE=1: re-execute all)"
	@echo "make chapter NAME=<chapter> PARAMS=params/quick.yml  - rerun one chapter through papermill"
	@echo "             (PARAMS= : the chapter's own defaults, on the committed store;"
	@echo "              TRAIN=1: train the runs the store lacks; without it the chapter stops and says what they cost;"
	@echo "              PREVIEW=1: render provisionally from the stored runs only, for a grid still running)"
	@echo "make bench   - speed benchmarks (benchmarks/results.json)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps $$(sed -n 's/^# --no-deps: //p' requirements.lock)
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

test: test-lib test-book

test-lib: venv
	$(PY) -m pytest tests -q

test-book: venv
	$(PY) scripts/book.py validate --drafts $(DRAFTS)

book: venv
	$(PY) scripts/book.py build $(if $(FORCE),--force)

chapter: venv
	$(PY) scripts/book.py chapter $(NAME) $(if $(PARAMS),--params $(PARAMS)) $(if $(TRAIN),-p allow_training True) $(if $(PREVIEW),-p stored_only True)

bench: venv
	$(PY) -m benchmarks.run

clean:
	rm -rf _build build .pytest_cache
