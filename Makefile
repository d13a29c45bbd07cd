# Two commands for a new user: `make demo` and `make test`. Needs Python 3.11+ and make
# (`make test` also needs Node.js 20+ and npm: the azure tests run Azurite, the storage emulator).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# editable_mode=compat: a plain path entry, no import hook to load on every command
STAMP   = $(VENV)/.installed
AZURE   = $(VENV)/.installed-azure
DEMO    = $(VENV)/.installed-demo
PLOT    = $(VENV)/.installed-plot
AZURITE = node_modules/.bin/azurite-blob

.PHONY: install install-azure test lint demo schema bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP) ## a .venv with amlctl (editable) and the dev tools

$(AZURE): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,azure,azure-v2]' --config-settings editable_mode=compat
	touch $(AZURE)

$(DEMO): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[demo]' --config-settings editable_mode=compat
	touch $(DEMO)

$(PLOT): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[plot]' --config-settings editable_mode=compat
	touch $(PLOT)

install-azure: $(AZURE) ## add the azure extras (azureml-sdk, azure-ai-ml), which the azure backend tests need

lint: $(STAMP)
	$(BIN)/ruff check amlctl tests bench

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(AZURITE)

test: $(AZURE) $(DEMO) $(PLOT) $(AZURITE) lint ## ruff, then the whole test suite (azure backend with Azurite, real TensorFlow)
	$(BIN)/python -m pytest -q

demo: $(DEMO) ## the quickstart: distributed TensorFlow on the local backend, no Azure account
	cd examples/mnist && ../../$(BIN)/amlctl validate
	cd examples/mnist && ../../$(BIN)/amlctl plan
	cd examples/mnist && ../../$(BIN)/amlctl apply --auto-approve --wait
	cd examples/mnist && ../../$(BIN)/amlctl status
	cd examples/mnist && ../../$(BIN)/amlctl metrics run.tf-mnist

schema: $(STAMP) ## regenerate schemas/amlctl.schema.json from the models
	$(BIN)/amlctl schema -o schemas/amlctl.schema.json
	$(BIN)/python -c "from amlctl.manifest.reference import reference_markdown as r; print(r(), end='')" > docs/manifest.md

bench: $(AZURE) $(AZURITE) ## every benchmark at the sizes the targets name (10,000-file trees, 64 MiB files; ~15 min)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/uploads.py
	$(BIN)/python bench/azure_requests.py
	$(BIN)/python bench/azure_uploads.py
	$(BIN)/python bench/runs.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/template_budget.py

bench-quick: $(AZURE) $(AZURITE) ## the same benchmarks on smaller trees (a few minutes; figures not comparable to the targets)
	$(BIN)/python bench/startup.py --runs 5
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/uploads.py --quick
	$(BIN)/python bench/azure_requests.py
	$(BIN)/python bench/azure_uploads.py --quick
	$(BIN)/python bench/runs.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/template_budget.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules
