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
	@echo "Variables: DATA=mnist|mnist10k (default mnist), ARGS='hydra overrides', DATA_DIR=path (default ./data), TORCH_INDEX=url (install: an extra index, e.g. CPU wheels)"
	@echo "Studies (sweep-*, progressive-*, profile-*): SEEDS=0,1,2 PRUNERS=admm,han TARGETS=16,32 replace a grid axis"

# The install is the lock's exact set (requirements.lock: versions and sha256 of every file), for
# CPython 3.11 on x86_64 Linux. TORCH_INDEX: an extra index for torch and torchvision, e.g. the CPU
# wheels (https://download.pytorch.org/whl/cpu) on a CPU-only machine; their +cpu versions are not
# the lock's, so that install takes pyproject.toml's ranges instead (as does LOCK= on another platform).
TORCH_INDEX ?=
LOCK ?= requirements.lock
PIP_VERSION ?= 26.3
$(STAMP): pyproject.toml $(LOCK)
	@echo "Installing into $(VENV) (torch 2.14 is large: a CUDA build of several GB unless TORCH_INDEX names CPU wheels)"
	$(PY_BASE) -m venv $(VENV)
	$(PY) -m pip install pip==$(PIP_VERSION)
ifeq ($(if $(TORCH_INDEX),,$(LOCK)),)
	$(PY) -m pip install $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e '.[dev,slurm]'
else
	@$(PY) -c 'import platform, sys; ok = sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64" \
		and sys.platform == "linux"; sys.exit(0 if ok else "$(LOCK) is for CPython 3.11 on x86_64 Linux, not " \
		+ platform.python_version() + " on " + platform.machine() + " " + sys.platform \
		+ ": make install LOCK= installs from pyproject.toml ranges")'
	$(PY) -m pip install --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
endif
	@touch $(STAMP)

install: $(STAMP) ## Create .venv from requirements.lock (exact versions and hashes; TORCH_INDEX=<url> for CPU wheels, unlocked)

lock: ## Refresh requirements.lock: the newest versions within pyproject.toml's ranges, with hashes (then make test)
	$(PY_BASE) -m venv .lock-venv && .lock-venv/bin/python -m pip install -q uv
	.lock-venv/bin/uv pip compile pyproject.toml --extra dev --extra slurm --generate-hashes --upgrade \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-annotate --no-header -o $(LOCK).body
	{ sed -n '1,/^# Refresh/p' $(LOCK); cat $(LOCK).body; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv $(LOCK).body

test: $(STAMP) ## Run the default test suite (about 5 min on 2 CPU cores)
	$(PY) -m pytest -q -m "not slow and not reliability"

smoke: $(STAMP) ## The whole pipeline on the mnist10k stand-in in about 15 seconds (1-epoch stages; results under artifacts/smoke/)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_71x data=mnist10k pretrain.epochs=1 pruner.iterations=2 \
		pruner.epochs_per_iteration=0.5 retrain.epochs=1 logger=csv paths.results_dir=artifacts/smoke $(ARGS)

test-reliability: $(STAMP) ## Crash/resume (real SIGKILL), corrupt and untrusted files, bad input, NaN, W&B down (a few min)
	$(PY) -m pytest -q tests/reliability

test-slow: $(STAMP) ## The slow tests only: AlexNet's whole pipeline on FakeData (about 1 min on 2 CPU cores: 47 s in a clean CI run; CI runs it)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP) ## Every test: default, reliability and slow
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests benchmarks examples

reproduce-lenet5: $(STAMP) ## ADMM LeNet-5 at 71.2x on full MNIST, the TF code's 171-epoch recipe (wall time per machine: the README's results table); DATA=mnist10k: the quick stand-in
	$(VENV)/bin/admm-prune experiment=lenet5_admm_71x data=$(DATA) $(ARGS)

reproduce-lenet5-fast: $(STAMP) ## LeNet-5 at 71.2x on a 70-epoch recipe (rho 1e-3 x1.3 per update) instead of the TF code's 171 epochs
	$(VENV)/bin/admm-prune experiment=lenet5_admm_71x_fast data=$(DATA) $(ARGS)

reproduce-lenet5-40x: $(STAMP) ## ADMM LeNet-5 at 40.2x (ICLR-workshop table)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_40x data=$(DATA) $(ARGS)

reproduce-lenet5-structured: $(STAMP) ## Structured ADMM (ADAM-ADMM) LeNet-5: conv1 filter + conv2 shape, and filter-only; unstructured fc
	$(VENV)/bin/admm-prune experiment=lenet5_admm_structured_shape data=$(DATA) $(ARGS)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_structured data=$(DATA) $(ARGS)

reproduce-lenet5-structured-short: $(STAMP) ## conv1 filter + conv2 shape with the fast recipe's ADMM phase (10 x 3 epochs, rho 1e-3 x1.3): 66 epochs instead of 171
	$(VENV)/bin/admm-prune experiment=lenet5_admm_structured_shape_short data=$(DATA) $(ARGS)

reproduce-lenet5-progressive: $(STAMP) ## Progressive ADMM LeNet-5 at 167x, the progressive code's recipe (5 rounds x 80 epochs: 2.1 h measured on 2 CPU cores)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_progressive_167x data=$(DATA) $(ARGS)

reproduce-lenet5-progressive-dropout-rule: $(STAMP) ## The same recipe with Han's dropout rule in every retraining (a variant, about 2 h on 2 CPU cores)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_progressive_167x_dropout_rule data=$(DATA) $(ARGS)

reproduce-lenet5-progressive-six-rounds: $(STAMP) ## The dropout-rule variant with a sixth round (81 -> 116 -> 167x); reuses its first four rounds (about 30 min after it)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_progressive_167x_six_rounds data=$(DATA) $(ARGS)

reproduce-lenet5-progressive-global-split: $(STAMP) ## The six-round variant with the last round's split by global magnitude (reuses its first five rounds: about 15 min after it)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_progressive_167x_global_split data=$(DATA) $(ARGS)

split-probe-lenet5-progressive: $(STAMP) ## Validation top-1 of the six-round run's 116x model pruned to 167x by each split (chose the global-split variant's)
	$(PY) -m admm_pruning.analysis.split_probe results/lenet5_admm_progressive_167x_six_rounds/mnist/seed0/summary.json \
		--round 5 --compression 167 --profile conv1=0.2,conv2=0.053,fc1=0.01,fc2=0.07 \
		--out results/lenet5_admm_progressive_167x_global_split/split_probe.md

reproduce-lenet5-progressive-short: $(STAMP) ## Progressive ADMM LeNet-5 at 167x on the shortened recipe of the progressive study (142 epochs instead of 418)
	$(VENV)/bin/admm-prune experiment=lenet5_admm_progressive_167x_short data=$(DATA) $(ARGS)

reproduce-lenet300: $(STAMP) ## ADMM LeNet-300-100 at 22.9x
	$(VENV)/bin/admm-prune experiment=lenet300_admm_23x data=$(DATA) $(ARGS)

reproduce-han: $(STAMP) ## Han et al. baselines: lenet5_han_12x and lenet300_han_12x
	$(VENV)/bin/admm-prune experiment=lenet5_han_12x data=$(DATA) $(ARGS)
	$(VENV)/bin/admm-prune experiment=lenet300_han_12x data=$(DATA) $(ARGS)

# Studies. Each grid (pruners x targets x seeds) lives in its experiment's hydra.sweeper.params
# (conf/experiment/<model>_sweep.yaml, <model>_progressive.yaml, lenet5_profile.yaml), and each
# pruner's share of a study's epoch budget in conf/study_pruner/<study>/<pruner>.yaml, applied
# whenever that study runs that pruner. So a bare `admm-prune -m experiment=lenet5_sweep
# data=mnist10k` runs the whole grid; the targets below only add the paper figures' report.
# These variables replace one axis of the grid when set (empty: the experiment's own grid):
#   SEEDS=0,1,2   PRUNERS=admm,iterative_magnitude,han   TARGETS=16,32 (prune.compression)
# The sweeps' Han-style baseline is iterative_magnitude (Han's schedule with exact top-k rounds:
# what the earlier studies called "han"); Han's own method, threshold rule and final retraining,
# is pruner=han: PRUNERS=admm,iterative_magnitude,han,oneshot,global_magnitude adds it.
SEEDS ?=
PRUNERS ?=
TARGETS ?=
# joblib runs 2 jobs at once; one thread each keeps them from fighting over the cores.
SWEEP_THREADS ?= 1
GRID = $(strip $(if $(SEEDS),seed=$(SEEDS)) $(if $(PRUNERS),pruner=$(PRUNERS)) $(if $(TARGETS),prune.compression=$(TARGETS)))
STUDY = OMP_NUM_THREADS=$(SWEEP_THREADS) $(VENV)/bin/admm-prune -m
# --paper NAME: the reference points `studies.NAME` of conf/papers/figures.yaml
AGGREGATE = $(PY) -m admm_pruning.analysis.aggregate

# Sweeps: same dense checkpoint, budget.epochs=24 after it for every pruner, the same retraining
# recipe; only the split differs (conf/study_pruner/sweep/): ADMM 12 iterations x 1 epoch + 12
# retraining, iterative magnitude (and han) 4 rounds (3 retrained x 4 epochs) + 12, one-shot and
# global magnitude 0 + 24.
sweep-lenet5: $(STAMP) ## Accuracy-vs-compression sweep, LeNet-5: 4 pruners x 4..128x x 2 seeds, equal budgets (use DATA=mnist10k here)
	$(STUDY) experiment=lenet5_sweep data=$(DATA) $(GRID) $(ARGS)
	$(AGGREGATE) results/lenet5_$(DATA)_sweep --paper lenet5 --wandb

sweep-lenet300: $(STAMP) ## Same sweep for LeNet-300-100, 4..64x
	$(STUDY) experiment=lenet300_sweep data=$(DATA) $(GRID) $(ARGS)
	$(AGGREGATE) results/lenet300_$(DATA)_sweep --paper lenet300 --wandb

report: $(STAMP) ## Re-aggregate every sweep folder in results/ (curve.csv, plot, report.md)
	for d in results/*_sweep; do m=$$(basename $$d | cut -d_ -f1); \
		$(AGGREGATE) $$d --paper $$m --wandb || exit 1; done

# Progressive ADMM (conf/experiment/<model>_progressive.yaml) against one-shot ADMM at the same
# targets from the same dense model, both in the experiment's grid. Both get the same ADMM epochs
# and the same 12 final retraining epochs: a progressive chain of R rounds trains R x 16 ADMM
# epochs + (R-1) x 8 retraining epochs between rounds, so one-shot ADMM gets that many epochs as
# Z/U updates every 2 epochs (study.oneshot_iterations in the experiment, per target), with the
# progressive rho schedule (1e-3 x1.3 per update, capped at the 8.16e-3 a progressive round ends
# with; conf/study_pruner/progressive/admm.yaml). A TARGETS value outside that map needs
# PRUNERS=admm_progressive (or ARGS=pruner.iterations=N for one-shot ADMM).
progressive-lenet5: $(STAMP) ## Progressive ADMM 27/81/167/250x vs one-shot ADMM, LeNet-5, equal epochs (use DATA=mnist10k here)
	$(STUDY) experiment=lenet5_progressive data=$(DATA) $(GRID) $(ARGS)
	$(AGGREGATE) results/lenet5_$(DATA)_progressive --paper lenet5_progressive --focus admm_progressive --wandb

progressive-lenet300: $(STAMP) ## Same for LeNet-300-100 at 27/60/100/150x
	$(STUDY) experiment=lenet300_progressive data=$(DATA) $(GRID) $(ARGS)
	$(AGGREGATE) results/lenet300_$(DATA)_progressive --paper lenet300_progressive --focus admm_progressive --wandb

# Per-layer profiles (conf/experiment/lenet5_profile.yaml): the grid runs prune.profile=preset,
# sensitivity,global_magnitude x 2 seeds; ARGS=prune.profile=preset,sensitivity narrows it.
profile-lenet5: $(STAMP) ## LeNet-5 at 71x: the paper's per-layer profile vs sensitivity / global-magnitude splits, equal budgets
	$(STUDY) experiment=lenet5_profile data=$(DATA) $(if $(SEEDS),seed=$(SEEDS)) $(ARGS)
	$(AGGREGATE) results/lenet5_$(DATA)_profile --paper lenet5_profile --focus admm+sensitivity --wandb

# Tuned comparisons (conf/experiment/<model>_compare_tune.yaml and <model>_compare.yaml; each
# pruner's search space in conf/study_pruner/compare/<pruner>.yaml, the same number of trials each):
#   1. tuning: every trial of every pruner at both budgets and two tuning targets, seed 0;
#   2. selection on validation (admm_pruning.tuning.select -> tuning/chosen.yaml, tuning.md);
#   3. reporting: the chosen setting per pruner at every target, seeds 1-3 (trial=chosen);
#   4. report.md and the figure (admm_pruning.analysis.budgets), test read once.
# A crash resumes from the stage cache at any step. BUDGETS=24 narrows both phases to one budget;
# PRUNERS narrows both; SEEDS and TARGETS narrow the reporting grid.
BUDGETS ?=
TUNE_GRID = $(strip $(if $(BUDGETS),budget.epochs=$(BUDGETS)) $(if $(PRUNERS),pruner=$(PRUNERS)))
REPORT_GRID = $(strip $(if $(BUDGETS),budget.epochs=$(BUDGETS)) $(GRID))
compare-lenet5: $(STAMP) ## Tuned comparison, LeNet-5: 7 pruners tuned on validation, 2 budgets (24, 72 epochs), 4..512x (6 targets), 3 seeds (DATA=mnist10k)
	$(STUDY) experiment=lenet5_compare_tune data=$(DATA) $(TUNE_GRID) $(ARGS)
	$(PY) -m admm_pruning.tuning.select results/lenet5_$(DATA)_compare
	$(STUDY) experiment=lenet5_compare data=$(DATA) $(REPORT_GRID) $(ARGS)
	$(PY) -m admm_pruning.analysis.budgets results/lenet5_$(DATA)_compare --paper lenet5 --wandb

compare-lenet5-mnist: $(STAMP) ## The comparison's full-MNIST points: ADMM, Han, one-shot at 32/71.2/128/256/512x, 5 seeds, with the mnist10k study's choices
	$(STUDY) experiment=lenet5_compare_mnist $(GRID) $(ARGS)
	$(PY) -m admm_pruning.analysis.budgets results/lenet5_compare_mnist --paper lenet5 --wandb
	$(PY) -m admm_pruning.analysis.verdict

compare-lenet300-mnist: $(STAMP) ## LeNet-300-100 on full MNIST: ADMM, Han, one-shot at 22.9/45/90/180x (24 epochs) and 22.9/90x (72), 5 seeds
	$(STUDY) experiment=lenet300_compare_mnist $(GRID) $(ARGS)
	$(STUDY) experiment=lenet300_compare_mnist budget.epochs=72 prune.compression=22.9,90 $(GRID) $(ARGS)
	$(PY) -m admm_pruning.analysis.budgets results/lenet300_compare_mnist --paper lenet300 --wandb
	$(PY) -m admm_pruning.analysis.verdict

compare-lenet300: $(STAMP) ## The same for LeNet-300-100, 4..256x
	$(STUDY) experiment=lenet300_compare_tune data=$(DATA) $(TUNE_GRID) $(ARGS)
	$(PY) -m admm_pruning.tuning.select results/lenet300_$(DATA)_compare
	$(STUDY) experiment=lenet300_compare data=$(DATA) $(REPORT_GRID) $(ARGS)
	$(PY) -m admm_pruning.analysis.budgets results/lenet300_$(DATA)_compare --paper lenet300 --wandb

# The runs speedup times need their stage folders (weights and masks) in artifacts/.
SPEEDUP_RUN ?= results/lenet5_admm_structured/mnist10k_conv2_shape/seed0/summary.json
SPEEDUP_COMPARE ?= results/lenet5_admm_structured/mnist10k/seed0/summary.json results/lenet5_admm_71x/mnist10k/seed0/summary.json
SPEEDUP_OUT ?= results/speedup.md
speedup: $(STAMP) ## Measured inference speedup (dense / masked / shrunk / CSR sparse) of the mnist10k structured runs vs the 71x preset -> results/speedup.md
	$(PY) benchmarks/speedup.py $(SPEEDUP_RUN) --compare $(SPEEDUP_COMPARE) --out $(SPEEDUP_OUT) $(ARGS)

speedup-mnist: $(STAMP) ## The same for the full-MNIST structured run (conv1 filter + conv2 shape, shortened ADMM) vs the unstructured 40x and mnist10k 71x runs -> results/speedup_mnist.md
	$(MAKE) speedup SPEEDUP_RUN=results/lenet5_admm_structured_shape_short/mnist/seed0/summary.json \
		SPEEDUP_COMPARE="results/lenet5_admm_40x/mnist/seed0/summary.json results/lenet5_admm_71x/mnist10k/seed0/summary.json" \
		SPEEDUP_OUT=results/speedup_mnist.md

DEPLOY_RUNS ?= results/lenet5_compare_mnist/runs/b24/admm_x71.2_seed2/summary.json \
	results/lenet5_admm_structured_shape_short/mnist10k/seed0/summary.json
deploy: $(STAMP) ## onnxruntime CPU inference, dense / masked / shrunk at batch 1 and 256, CSR kernels on the costliest conv -> results/deploy.md (needs the runs' stage folders)
	$(PY) benchmarks/deploy.py $(DEPLOY_RUNS) --out results/deploy.md $(ARGS)

bench: $(STAMP) ## Training throughput vs a plain PyTorch loop; ADMM and masked vs dense epoch time (full MNIST, 1 epoch x 5 rounds: about 17 min)
	$(PY) benchmarks/throughput.py --data $(DATA) --epochs 1 --rounds 5 $(ARGS)

bench-packed: $(STAMP) ## Several runs trained as one (torch.func vmap) vs two joblib workers, LeNet-300-100 and LeNet-5
	$(PY) benchmarks/packed.py --data mnist10k --model lenet300 --packs 2 4 8 16 --steps 200 --rounds 3
	$(PY) benchmarks/packed.py --data mnist10k --model lenet5 --packs 2 4 8 --steps 100 --rounds 3

verdict: $(STAMP) ## results/verdict.md: each claim's verdict per network, budget and target, paired by seed, from the tuned comparisons
	$(PY) -m admm_pruning.analysis.verdict

readme: $(STAMP) ## Regenerate README's results section from results/
	$(PY) -m admm_pruning.analysis.readme

clean: ## Remove stage artifacts (not results/)
	rm -rf artifacts

.PHONY: smoke verdict compare-lenet300-mnist split-probe-lenet5-progressive reproduce-lenet5-progressive-global-split bench-packed reproduce-lenet5-progressive-dropout-rule reproduce-lenet5-progressive-six-rounds compare-lenet5 compare-lenet5-mnist compare-lenet300 reproduce-lenet5-structured-short reproduce-lenet5-progressive reproduce-lenet5-progressive-short speedup-mnist reproduce-lenet5-fast test-all profile-lenet5 progressive-lenet5 progressive-lenet300 help install test test-reliability test-slow lint reproduce-lenet5 reproduce-lenet5-40x reproduce-lenet5-structured speedup reproduce-lenet300 sweep-lenet5 sweep-lenet300 report bench readme clean
