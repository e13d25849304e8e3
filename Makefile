# The two commands the README promises; .ci/run calls `make test`.
PYTHON ?= python3
# Real MNIST beside the checkout when present (the library downloads it otherwise).
SHARED_MNIST := $(abspath ../shared/data/mnist)
export RESGRAPH_DATA ?= $(if $(wildcard $(SHARED_MNIST)),$(SHARED_MNIST),)

.PHONY: install run test bench

install:
	$(PYTHON) -m pip install -q -e ".[test]"

# Main job: train the paper's DRN-XS on MNIST with equilibrium propagation (10 epochs).
run: install
	resgraph train --preset xs --epochs 10

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) -m pip install -q -e ".[bench]"
	$(PYTHON) benchmarks/solve_vs_osqp.py
	$(PYTHON) benchmarks/drn_epoch.py
