# ADMM weight-pruning reproducibility suite. `make help` lists the targets.
SHELL := /bin/bash
PY_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= mnist
ARGS ?=
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}'
	@echo "Variables: DATA=mnist|mnist10k (default mnist), ARGS='hydra overrides', DATA_DIR=path (default ./data)"

$(STAMP): pyproject.toml
	$(PY_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv from pyproject.toml (torch 2.14 + torchvision 0.29.2 pinned)

test: $(STAMP) ## Run the default test suite (about 5-10 min on 2 CPU cores)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) ## Run the slow tests too
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

reproduce-lenet5: $(STAMP) ## ADMM LeNet-5 at 71.2x (ECCV / TF recipe); DATA=mnist10k on machines without MNIST train
	$(VENV)/bin/admm-prune experiment=lenet5_admm_71x data=$(DATA) $(ARGS)

reproduce-lenet5-40x: $(STAMP) ## ADMM LeNet-5 at 40.2x (ICLR-workshop table)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_40x data=$(DATA) $(ARGS)

reproduce-lenet300: $(STAMP) ## ADMM LeNet-300-100 at 22.9x
	$(VENV)/bin/admm-prune experiment=lenet300_admm_23x data=$(DATA) $(ARGS)

reproduce-han: $(STAMP) ## Han et al. baselines: lenet5_han_12x and lenet300_han_12x
	$(VENV)/bin/admm-prune experiment=lenet5_han_12x data=$(DATA) $(ARGS)
	$(VENV)/bin/admm-prune experiment=lenet300_han_12x data=$(DATA) $(ARGS)

# Sweeps: same dense checkpoint, budget.epochs=24 after it for every pruner (set in
# conf/experiment/<model>_sweep.yaml), the same retraining recipe; only the split differs:
# ADMM 12 iterations x 1 epoch + 12 retraining, Han 4 rounds (3 retrained x 4 epochs) + 12,
# one-shot and global magnitude 0 + 24.
SWEEP_SEEDS ?= 0,1
# joblib runs 2 jobs at once; one thread each keeps them from fighting over the cores.
SWEEP_THREADS ?= 1
SWEEP_LENET5 ?= 4,8,16,32,64,128
SWEEP_LENET300 ?= 4,8,16,32,64
SWEEP_ADMM ?= pruner=admm pruner.iterations=12 pruner.epochs_per_iteration=1
SWEEP_HAN ?= pruner=han pruner.rounds=4 pruner.epochs_per_round=4
define sweep
	OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=$(1)_sweep data=$(DATA) prune.compression=$(2) seed=$(SWEEP_SEEDS) \
		pruner=oneshot,global_magnitude $(ARGS)
	OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=$(1)_sweep data=$(DATA) prune.compression=$(2) seed=$(SWEEP_SEEDS) \
		$(SWEEP_HAN) $(ARGS)
	OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=$(1)_sweep data=$(DATA) prune.compression=$(2) seed=$(SWEEP_SEEDS) \
		$(SWEEP_ADMM) $(ARGS)
	$(PY) benchmarks/aggregate.py results/$(1)_$(DATA)_sweep --paper-json conf/paper/$(1).json --wandb
endef

sweep-lenet5: $(STAMP) ## Accuracy-vs-compression sweep, LeNet-5, 4 pruners x 4..128x x SWEEP_SEEDS (use DATA=mnist10k here)
	$(call sweep,lenet5,$(SWEEP_LENET5))

sweep-lenet300: $(STAMP) ## Same sweep for LeNet-300-100, 4..64x
	$(call sweep,lenet300,$(SWEEP_LENET300))

report: $(STAMP) ## Re-aggregate every sweep folder in results/ (curve.csv, plot, report.md)
	for d in results/*_sweep; do m=$$(basename $$d | cut -d_ -f1); \
		$(PY) benchmarks/aggregate.py $$d --paper-json conf/paper/$$m.json --wandb || exit 1; done

bench: $(STAMP) ## Training throughput vs a plain PyTorch loop; ADMM vs dense epoch time
	$(PY) benchmarks/throughput.py --data $(DATA) $(ARGS)

readme: $(STAMP) ## Regenerate README's results section from results/
	$(PY) benchmarks/readme_results.py

clean: ## Remove stage artifacts (not results/)
	rm -rf artifacts

.PHONY: help install test test-slow lint reproduce-lenet5 reproduce-lenet5-40x reproduce-lenet300 sweep-lenet5 sweep-lenet300 report bench readme clean
