# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment in $(VENV) when missing and installs the package with
# its test, plotting and documentation extras, pinned by constraints.txt (torch's CPU build).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.autodeuq-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint docs bench bench-uci bench-search bench-memory bench-scaling bench-discard bench-gpu bench-peer soak clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,plot,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo_autodeuq.py

lint: install
	$(BIN)/ruff check .

# The suite includes tests/test_docs.py, which builds the documentation as `make docs` does.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# HTML into docs/_build/html, warnings as errors. The API pages (docs/generated) and the gallery
# (docs/auto_examples) are generated afresh, so none is left of a name that no longer exists.
docs: install
	rm -rf docs/generated docs/auto_examples
	$(BIN)/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

bench: install
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_batched.py
	$(BIN)/python benchmarks/bench_search.py

# Issue 4's table: about 45 min for the three small datasets (4 min of search a split).
bench-uci: install
	$(BIN)/python benchmarks/bench_uci.py --estimators autodeuq deep_ensemble gaussian_mlp \
		--time-budget 240

bench-search: install
	$(BIN)/python benchmarks/bench_search.py

# Issue 5: autodeuq, DeepHyper 0.13.2 and DeepEnsembleRegressor side by side on yacht, energy
# and concrete, splits 0-2, 5 min of search each, 2 workers (about 2 h; the first run also
# makes benchmarks/.venv-deephyper). Tables in benchmarks/results/compare_deephyper/.
bench-peer: install
	$(BIN)/python benchmarks/compare_deephyper.py --time-budget 300 --workers 2

# Peak RSS over a 500-candidate AutoDEUQ search, three variants (~15 min on 2 cores: not in bench).
bench-memory: install
	$(BIN)/python benchmarks/bench_memory.py

# Issue 8: fit time and peak RSS as rows (1k-100k) and evaluations (50-1,000) grow, with the
# exponent of each (sized for 15-20 min on 2 quiet cores: not in bench).
bench-scaling: install
	$(BIN)/python benchmarks/bench_scaling.py

# Issue 8: early discarding against the full search, time to the same validation NLL over five
# seeds on UCI energy and concrete (about 30 min on 2 cores, serial searches: not in bench).
bench-discard: install
	$(BIN)/python benchmarks/bench_discard.py --seeds 0 1 2 3 4

# Issue 8 on a GPU machine: candidates per hour on one GPU with trials_per_device 1, 2 and 4
# (about 5 min; exits 2 without a CUDA device).
bench-gpu: install
	$(BIN)/python benchmarks/bench_gpu.py

# Issue 6's soak test: 300 short candidates on 2 worker processes, one worker SIGKILLed every
# 30 s; reports trials finished, retried and lost, and fails if any trial is unaccounted for
# (a few minutes on 2 cores: not in CI; `pytest -m slow tests/test_soak.py` runs a short one).
soak: install
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache tutorial_deep_ensemble.png autodeuq_demo.png \
		docs/_build docs/generated docs/auto_examples
