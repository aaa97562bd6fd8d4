# Set-up and entry points. `make demo` and `make test` are the README's two
# commands: each creates .venv on first use and installs what it needs.
# ci/constraints-cpu.txt pins PyTorch's CPU build (a plain `pip install dwcube` from
# PyPI would pull the CUDA build, ~3 GB); users without a GPU: see README, "Installing".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := ci/constraints-cpu.txt

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-core: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[plot]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-core
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $@

demo: $(VENV)/.installed-core
	$(BIN)/dwcube demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow"

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_graph.py
	$(BIN)/python benchmarks/bench_indices.py
	$(BIN)/python benchmarks/bench_clouds.py
	$(BIN)/python benchmarks/bench_dynamic_world.py $(if $(DWCUBE_TF_PYTHON),--tf-python $(DWCUBE_TF_PYTHON))
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_import.py

clean:
	rm -rf $(VENV) dwcube-demo
