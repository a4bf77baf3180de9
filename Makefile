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

bench: $(STAMP) ## Training throughput vs a plain PyTorch loop; ADMM vs dense epoch time
	$(PY) benchmarks/throughput.py --data $(DATA) $(ARGS)

readme: $(STAMP) ## Regenerate README's results section from results/
	$(PY) benchmarks/readme_results.py

clean: ## Remove stage artifacts (not results/)
	rm -rf artifacts

.PHONY: help install test test-slow lint reproduce-lenet5 reproduce-lenet5-40x reproduce-lenet300 bench readme clean
