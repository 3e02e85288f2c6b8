"""Errors a user can act on.

Library code raises these (or subclasses) for bad input: a missing file, a typo in a config
field, a checkpoint of the wrong shape. The CLI prints them as one line without a traceback;
any other exception is a bug and keeps its traceback.
"""


class GeexError(Exception):
    """Bad input or environment, described so that the user knows what to change."""


class ConfigError(GeexError, ValueError):
    """A configuration field is unknown, missing or out of range."""
