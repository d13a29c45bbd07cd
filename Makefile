# Two commands for a new user: `make demo` and `make test`. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install install-azure test lint demo schema bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## a .venv with amlctl (editable) and the dev tools

install-azure: $(STAMP) ## add the azure extra (azureml-sdk) to the .venv
	$(BIN)/python -m pip install --quiet -e '.[dev,azure]'

lint: $(STAMP)
	$(BIN)/ruff check amlctl tests bench

test: $(STAMP) lint ## ruff, then the whole test suite
	$(BIN)/python -m pytest -q

demo: $(STAMP) ## the quickstart on the local backend
	cd examples/mnist && ../../$(BIN)/amlctl validate && ../../$(BIN)/amlctl render

schema: $(STAMP) ## regenerate schemas/amlctl.schema.json from the models
	$(BIN)/amlctl schema -o schemas/amlctl.schema.json
	$(BIN)/python -c "from amlctl.manifest.reference import reference_markdown as r; print(r(), end='')" > docs/manifest.md

bench: $(STAMP) ## startup, plan scale and upload benchmarks (ratios to baselines)
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
