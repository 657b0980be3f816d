# The two commands of the README:
#   make figures [PROFILE=smoke|paper]   regenerate results (if missing) and every figure of a profile
#   make test                            unit tests + nbval on the executed notebooks
PROFILE ?= smoke
PY := .venv/bin/python
STAMP := .venv/.alkit-installed

.PHONY: setup figures test run clean-scratch

$(STAMP): pyproject.toml requirements/constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: $(STAMP)

figures: setup
	$(PY) -m alkit.batch --profile $(PROFILE) $(if $(DRAW_ONLY),--draw-only)

# experiments only, no Jupyter (for a GPU box or a cluster); notebooks then find them finished.
# JOBS runs at once (worker processes); TIME_LIMIT seconds per call (rerun to continue)
JOBS ?= 1
run: setup
	$(PY) -m alkit run params/$(PROFILE)/*.yaml --jobs $(JOBS) $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT))

test: setup
	.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider
