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
	$(PY) -m pytest -q -m "not slow and not reliability"

test-reliability: $(STAMP) ## Crash/resume (real SIGKILL), corrupt and untrusted files, bad input, NaN, W&B down (a few min)
	$(PY) -m pytest -q tests/reliability

test-slow: $(STAMP) ## The slow tests only: AlexNet's whole pipeline on FakeData (about 3 min; CI runs it)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP) ## Every test: default, reliability and slow
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

reproduce-lenet5: $(STAMP) ## ADMM LeNet-5 at 71.2x (ECCV / TF recipe); DATA=mnist10k on machines without MNIST train
	$(VENV)/bin/admm-prune experiment=lenet5_admm_71x data=$(DATA) $(ARGS)

reproduce-lenet5-40x: $(STAMP) ## ADMM LeNet-5 at 40.2x (ICLR-workshop table)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_40x data=$(DATA) $(ARGS)

reproduce-lenet5-structured: $(STAMP) ## Structured ADMM (ADAM-ADMM) LeNet-5: conv1 filter + conv2 shape, and filter-only; unstructured fc
	$(VENV)/bin/admm-prune experiment=lenet5_admm_structured_shape data=$(DATA) $(ARGS)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_structured data=$(DATA) $(ARGS)

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
	$(PY) -m admm_pruning.analysis.aggregate results/$(1)_$(DATA)_sweep --paper-json conf/paper/$(1).json --wandb
endef

sweep-lenet5: $(STAMP) ## Accuracy-vs-compression sweep, LeNet-5, 4 pruners x 4..128x x SWEEP_SEEDS (use DATA=mnist10k here)
	$(call sweep,lenet5,$(SWEEP_LENET5))

sweep-lenet300: $(STAMP) ## Same sweep for LeNet-300-100, 4..64x
	$(call sweep,lenet300,$(SWEEP_LENET300))

report: $(STAMP) ## Re-aggregate every sweep folder in results/ (curve.csv, plot, report.md)
	for d in results/*_sweep; do m=$$(basename $$d | cut -d_ -f1); \
		$(PY) -m admm_pruning.analysis.aggregate $$d --paper-json conf/paper/$$m.json --wandb || exit 1; done

# Progressive ADMM (conf/experiment/<model>_progressive.yaml) against one-shot ADMM at the same
# targets from the same dense model. Both get the same ADMM epochs and the same 12 final
# retraining epochs: a progressive chain of R rounds trains R x 16 ADMM epochs + (R-1) x 8
# retraining epochs between rounds, so one-shot ADMM gets that many epochs as Z/U updates
# every 2 epochs (target:iterations below), with the progressive rho schedule (1e-3 x1.3 per
# update, capped at the 8.16e-3 a progressive round ends with).
PROG_LENET5 ?= 27,81,167,250
PROG_LENET300 ?= 27,60,100,150
PROG_ONESHOT_LENET5 ?= 27:32 81:44 167:56 250:56
PROG_ONESHOT_LENET300 ?= 27:32 60:44 100:44 150:56
PROG_ONESHOT ?= pruner=admm pruner.epochs_per_iteration=2 pruner.rho=1e-3 pruner.rho_multiplier=1.3 pruner.rho_max=8.16e-3
define progressive
	OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=$(1)_progressive data=$(DATA) \
		prune.compression=$(2) seed=$(SWEEP_SEEDS) $(ARGS)
	for ti in $(3); do OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=$(1)_progressive \
		data=$(DATA) seed=$(SWEEP_SEEDS) $(PROG_ONESHOT) prune.compression=$${ti%%:*} pruner.iterations=$${ti##*:} \
		$(ARGS) || exit 1; done
	$(PY) -m admm_pruning.analysis.aggregate results/$(1)_$(DATA)_progressive --paper-json conf/paper/$(1)_progressive.json \
		--focus admm_progressive --wandb
endef

progressive-lenet5: $(STAMP) ## Progressive ADMM 27/81/167/250x vs one-shot ADMM, LeNet-5, equal epochs (use DATA=mnist10k here)
	$(call progressive,lenet5,$(PROG_LENET5),$(PROG_ONESHOT_LENET5))

progressive-lenet300: $(STAMP) ## Same for LeNet-300-100 at 27/60/100/150x
	$(call progressive,lenet300,$(PROG_LENET300),$(PROG_ONESHOT_LENET300))

profile-lenet5: $(STAMP) ## LeNet-5 at 71x: the paper's per-layer profile vs sensitivity / global-magnitude splits, equal budgets
	OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m experiment=lenet5_profile data=$(DATA) \
		prune.profile=preset,sensitivity,global_magnitude seed=$(SWEEP_SEEDS) $(ARGS)
	$(PY) -m admm_pruning.analysis.aggregate results/lenet5_$(DATA)_profile --paper-json conf/paper/lenet5_profile.json \
		--focus admm+sensitivity --wandb

speedup: $(STAMP) ## Measured inference speedup (dense / masked / shrunk) of the structured runs vs the 71x preset -> results/speedup.md
	$(PY) benchmarks/speedup.py results/lenet5_admm_structured/$(DATA)_conv2_shape/summary.json \
		--compare results/lenet5_admm_structured/$(DATA)/summary.json results/lenet5_admm_71x/$(DATA)/summary.json --out results/speedup.md $(ARGS)

bench: $(STAMP) ## Training throughput vs a plain PyTorch loop; ADMM vs dense epoch time
	$(PY) benchmarks/throughput.py --data $(DATA) $(ARGS)

readme: $(STAMP) ## Regenerate README's results section from results/
	$(PY) -m admm_pruning.analysis.readme

clean: ## Remove stage artifacts (not results/)
	rm -rf artifacts

.PHONY: test-all profile-lenet5 progressive-lenet5 progressive-lenet300 help install test test-reliability test-slow lint reproduce-lenet5 reproduce-lenet5-40x reproduce-lenet5-structured speedup reproduce-lenet300 sweep-lenet5 sweep-lenet300 report bench readme clean
