"""User-facing errors.

A `UserError` is a mistake the user can fix (unknown name, bad parameter, missing file). The CLI turns
it into one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the offending key and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A bad configuration value (unknown name, out-of-range parameter, unreadable file)."""


class MissingWeightsError(UserError):
    """Model or scorer weights that cannot be found locally (and may not be downloaded)."""
