# The two commands: `make run` starts the receiver, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint format bench vendor clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The pinned dependencies live in the requirements files (pyproject.toml reads the same
# files for 'pip install .'); the code itself runs from the checkout.
$(VENV)/.run-deps: pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev-deps: pyproject.toml requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	@touch $@ $(VENV)/.run-deps

## run: start gunicorn on $$PORT (default 8000); needs PNM_API_KEY and PNM_API_SECRET
run: $(VENV)/.run-deps
	@$(BIN)/python -m config
	exec $(BIN)/gunicorn -c gunicorn.conf.py

## test: lint, type-check, then the whole test suite
test: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

$(VENV)/.bench-deps: pyproject.toml requirements.txt requirements-dev.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt -r requirements-bench.txt
	@touch $@ $(VENV)/.dev-deps $(VENV)/.run-deps

## bench: measure against the bare-Flask floor and write BENCHMARKS.md (several minutes)
bench: $(VENV)/.bench-deps
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) ..."; \
	  apt-get install -y wrk >/dev/null 2>&1 || { echo "wrk is needed: install it with your package manager, e.g. apt-get install wrk"; exit 1; }; }
	$(BIN)/python -m bench.run --notes bench/NOTES.md $(BENCH_ARGS)

CHARTJS := 4.6.1
CHARTJS_DIR := plugnmeet_webhooks/web/dashboard/static/vendor/chart.js-$(CHARTJS)
## vendor: fetch Chart.js $(CHARTJS) from the npm registry again and check it against SHA256SUMS
vendor:
	@command -v npm >/dev/null || { echo "npm is needed to fetch Chart.js: apt-get install npm"; exit 1; }
	rm -rf build/vendor && mkdir -p build/vendor
	cd build/vendor && npm pack --silent chart.js@$(CHARTJS) >/dev/null && tar -xzf chart.js-$(CHARTJS).tgz
	cp build/vendor/package/dist/chart.umd.min.js build/vendor/package/LICENSE.md $(CHARTJS_DIR)/
	cd $(CHARTJS_DIR) && sha256sum -c SHA256SUMS

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.dev-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build *.egg-info
