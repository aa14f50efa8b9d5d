# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment in $(VENV) when missing and installs the package with
# its test and plotting extras, pinned by constraints.txt (torch's CPU build).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.autodeuq-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench bench-uci bench-search bench-memory clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,plot]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo_autodeuq.py

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_search.py

# Issue 4's table: about 45 min for the three small datasets (4 min of search a split).
bench-uci: install
	$(BIN)/python benchmarks/bench_uci.py --estimators autodeuq deep_ensemble gaussian_mlp \
		--time-budget 240

bench-search: install
	$(BIN)/python benchmarks/bench_search.py

# Peak RSS over a 500-candidate AutoDEUQ search, three variants (~15 min on 2 cores: not in bench).
bench-memory: install
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache tutorial_deep_ensemble.png autodeuq_demo.png
