# The two commands of the README: `make study` (the main job on the embedded tiny default) and `make test`.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install study test lint

# Installs quantkit (editable) with its test tools once, and again whenever pyproject.toml changes.
.install-stamp: pyproject.toml
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch .install-stamp

install: .install-stamp

study: install
	$(PYTHON) -m quantkit study

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: lint
	$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc
