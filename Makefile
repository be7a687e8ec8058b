# The two commands of the README: `make study` (the main job on the embedded tiny default) and `make test`.
# Both first install quantkit into .venv from requirements.lock, and again whenever the lock or pyproject.toml
# changes, so every machine runs the same dependency releases whatever the registries publish later.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
LOCK_FLAGS := --extra dev --constraint ci/lock-constraints.txt --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes --no-header

.PHONY: install study test lint lock mutation

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

study: install
	$(PY) -m quantkit study

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Re-resolve requirements.lock from pyproject.toml: the newest releases within its ranges, except what
# ci/lock-constraints.txt holds back (the releases the committed golden files were made with).
lock: install
	$(PY) -m uv pip compile pyproject.toml $(LOCK_FLAGS) --upgrade --output-file requirements.lock

# Mutation score of the unit and property suites for quantkit/codecs, quantkit/nn and quantkit/stats (not part of
# `make test`: 50 minutes for all 4087 mutants on 2 cores; see docs/mutation.md). MUTANTS narrows it, e.g.
# MUTANTS='quantkit.stats.*'. mutants/ is rebuilt from scratch each time: mutmut 3.8 drops its recorded test
# coverage when it reuses an old mutants/ directory, and then reports every mutant as "no tests". One thread per
# library: mutmut forks a worker per mutant from a process whose OpenMP pool is running, and a forked worker that
# needs the pool waits forever on a lock no thread will release (measured: NF4 and GGUF layer mutants sat at 0% CPU
# until their timeout, and were counted as timeouts, not kills).
MUTANTS ?=
mutation: install
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 HYPOTHESIS_PROFILE=mutation nice -n 10 \
		$(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(VENV)/bin/mutmut results
