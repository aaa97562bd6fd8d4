# Set-up and entry points. `make demo` and `make test` are the README's two
# commands: each creates .venv on first use and installs what it needs.
# ci/constraints-cpu.txt pins PyTorch's CPU build (a plain `pip install dwcube` from
# PyPI would pull the CUDA build, ~3 GB); users without a GPU: see README, "Installing".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := ci/constraints-cpu.txt

.PHONY: demo test test-fast docs docs-clean bench clean serve-js

# The page of `dwcube serve` ships Leaflet inside the package (dwcube/serve/static/vendor/leaflet,
# with its licence); `make serve-js` refreshes it from the npm registry at this version.
LEAFLET_VERSION := 1.9.4
LEAFLET_DIR := dwcube/serve/static/vendor/leaflet

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-core: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[plot]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-core
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[test,onnx]"
	touch $@

# The browser tests of `dwcube serve` drive Debian's chromium with Playwright (no browser
# download): install it when missing (as root; otherwise say how, and those tests skip).
$(VENV)/.installed-browser: $(VENV)/.installed-test
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core; \
	else echo "no chromium: run 'sudo apt-get install chromium' for the browser tests (they skip meanwhile)"; fi
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed-core
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[docs]"
	touch $@

demo: $(VENV)/.installed-core
	$(BIN)/dwcube demo

test: $(VENV)/.installed-browser docs
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-browser
	$(BIN)/python -m pytest -m "not slow"

# The documentation site, offline, into docs/_build/html (index.html); warnings are errors
# (-W, nitpicky: a broken cross-reference fails), notebooks are executed (cached by their code
# in docs/_build/.jupyter_cache; `make docs-clean` forgets everything).
docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -b html -W --keep-going -n -q docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

docs-clean:
	rm -rf docs/_build docs/_generated docs/api/generated

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_graph.py
	$(BIN)/python benchmarks/bench_indices.py
	$(BIN)/python benchmarks/bench_clouds.py
	$(BIN)/python benchmarks/bench_dynamic_world.py $(if $(DWCUBE_TF_PYTHON),--tf-python $(DWCUBE_TF_PYTHON))
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_import.py

serve-js:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack -q leaflet@$(LEAFLET_VERSION) && tar xzf leaflet-$(LEAFLET_VERSION).tgz && \
	cd - >/dev/null && rm -rf $(LEAFLET_DIR) && mkdir -p $(LEAFLET_DIR) && \
	cp -r $$tmp/package/dist/leaflet.js $$tmp/package/dist/leaflet.css $$tmp/package/dist/images $$tmp/package/LICENSE $(LEAFLET_DIR)/ && \
	rm -rf $$tmp && echo "Leaflet $(LEAFLET_VERSION) from npm in $(LEAFLET_DIR)"

clean:
	rm -rf $(VENV) dwcube-demo test-artifacts docs/_build docs/_generated docs/api/generated
