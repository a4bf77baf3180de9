"""The two errors a user can cause, on the ground floor so that every layer can raise them
without importing the layer that reports them (train.py turns both into one line and exit 2)."""


class ConfigError(ValueError):
    """A configuration value that cannot work, named by its key."""


class DataError(RuntimeError):
    """Data set missing or corrupt: raised before any training starts."""
