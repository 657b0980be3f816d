# The two commands of the README:
#   make figures [PROFILE=smoke|paper]   regenerate results (if missing) and every figure of a profile
#   make test                            the layers (lint-imports) + unit tests + nbval on the executed notebooks
#   make test-fast                       the layers + unit tests without notebooks, browser or Ray (the inner loop)
PROFILE ?= smoke
PY := .venv/bin/python
STAMP := .venv/.alkit-installed

.PHONY: setup figures test test-fast run site clean-scratch

$(STAMP): pyproject.toml requirements/constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: $(STAMP)

figures: setup
	$(PY) -m alkit.batch --profile $(PROFILE) $(if $(DRAW_ONLY),--draw-only)

# the static HTML site (README, docs/, executed notebooks with their interactive figures) in site/; offline
site: setup
	$(PY) -m alkit.site --out site

# experiments only, no Jupyter (for a GPU box or a cluster); notebooks then find them finished.
# JOBS runs at once (worker processes); TIME_LIMIT seconds per call (rerun to continue)
JOBS ?= 1
run: setup
	$(PY) -m alkit run params/$(PROFILE)/*.yaml --jobs $(JOBS) $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT))

# pytest-xdist workers: one per core, at most 4 (each is a full Python with torch; the tests start more
# processes of their own). loadgroup: every test is a work unit of its own, but a notebook's nbval cells, the Ray
# tests, and a file's tests that share a module fixture go together, in order; units start longest first
# (tests/conftest.py HEAVY_FIRST; --no-loadscope-reorder keeps that order).
# TEST_WORKERS=0 runs in this process (no xdist), e.g. to use a debugger.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

# an upward import (against pyproject.toml's layers contract, ARCHITECTURE.md) fails the build before any test
test: setup
	.venv/bin/lint-imports --no-logo
	.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider $(XDIST)

FAST := not slow and not notebooks and not browser and not ray
test-fast: setup
	.venv/bin/lint-imports --no-logo
	.venv/bin/python -m pytest tests -m "$(FAST)" -p no:cacheprovider -q $(XDIST)
