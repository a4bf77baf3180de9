"""Value checks that name the key: every layer checks what it reads with these, so a bad value is
refused with one line (``<key>=<value>: why``) before anything trains."""

from __future__ import annotations

import math

from admm_pruning.foundations.errors import ConfigError


def as_number(key: str, value: object) -> float:
    """``value`` as a float; a bool, a string or a non-finite number is a mistake, not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r}: expected a number")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: not a finite number")
    return float(value)


def positive(key: str, value: object) -> None:
    """Sizes, counts and rates that must be > 0 (None: unset, nothing to check)."""
    if value is not None and as_number(key, value) <= 0:
        raise ConfigError(f"{key}={value}: must be > 0")


def non_negative(key: str, value: object) -> None:
    if value is not None and as_number(key, value) < 0:
        raise ConfigError(f"{key}={value}: must be >= 0")


def epochs(key: str, value: object) -> None:
    """A whole number of epochs, >= 0."""
    if value is not None and as_number(key, value) < 0:
        raise ConfigError(f"{key}={value}: epoch counts must be >= 0")


def dropout_rate(key: str, value: object) -> None:
    """torch checks a rate only when it builds the layer, which for retraining is two stages in."""
    if value is not None and not 0.0 <= as_number(key, value) < 1.0:
        raise ConfigError(f"{key}={value}: a dropout rate must lie in [0, 1)")


def factor(key: str, value: object) -> None:
    """A multiplicative decay in (0, 1]."""
    if value is not None and not 0.0 < as_number(key, value) <= 1.0:
        raise ConfigError(f"{key}={value}: must lie in (0, 1]")
