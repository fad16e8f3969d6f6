"""The one exception type the data layer raises for user-facing problems."""

from __future__ import annotations


class LRADataError(RuntimeError):
    """A data problem the user can fix: the message says what, the value, and the fix.

    The harness catches this type and prints its message as a single line.
    """


class LRAConfigError(LRADataError, ValueError):
    """A bad data setting (wrong source, bad limit, ...): also a ``ValueError``."""
