"""Errors that stop start-up with one clear message (the CLI prints it and exits 2)."""


class StartupError(Exception):
    """A problem the operator must fix before stream-gate can run."""


class ConfigError(StartupError):
    """A bad config file, key or value; the message names the file and key path."""


class SourceError(StartupError):
    """A video source that cannot be opened or decoded; the message names the source."""


class SinkError(StartupError):
    """An output (Redis, a directory) that cannot be reached or written."""


class ModelError(StartupError):
    """A model file that is missing, unreadable or of the wrong shape."""
