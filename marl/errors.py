"""User-facing errors.

A `MarlError` means the user asked for something that cannot work (a typo in an override, an impossible
combination of settings, a missing file). Its message names the cause and the fix in one paragraph; the CLI
prints it without a traceback and exits with status 2. Bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations


class MarlError(Exception):
    """Base class for errors caused by user input; the message is shown as-is, without a traceback."""


class ConfigError(MarlError):
    """An invalid configuration: bad override, unknown key or preset, wrong type or impossible value."""


class DivergenceError(MarlError):
    """Training diverged (a non-finite loss, or parameters, value loss or policy change beyond any sane
    bound): the message names the quantity, its value, the bound and the fix."""
