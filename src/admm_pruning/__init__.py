"""ADMM weight pruning (Zhang et al. 2018) and its baselines, reproducibly."""

__version__ = "0.1.0"
