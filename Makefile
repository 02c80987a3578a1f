# glucover: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck compose-check pytest system system-test venv bench clean

demo: system venv
	$(VENV)/bin/glucover up

test: system-test venv lint typecheck compose-check pytest

system:
	@scripts/system-deps.sh

system-test:
	@scripts/system-deps.sh --test

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

compose-check:
	docker-compose -f docker-compose.yml config -q

# pytest's exit code 5 (no tests collected) fails the target like any other failure.
pytest: venv
	$(VENV)/bin/pytest

bench: venv
	$(VENV)/bin/glucover bench pricing
	$(VENV)/bin/glucover bench ingest

clean:
	rm -rf $(VENV) .glucover .pytest_cache .mypy_cache .ruff_cache
