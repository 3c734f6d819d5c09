"""Exceptions are for bad input and bugs only; "does not fit" is a Status.

OmeError
 +-- InvalidInput        bad user data (a CSV row, a CRD field); names the source
 +-- InvariantViolation  an allocation that would over-commit; always a bug in the caller
"""

from __future__ import annotations


class OmeError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidInput(OmeError, ValueError):
    """Input that cannot be used; the message names the file, line, field or object."""


class InvariantViolation(OmeError, RuntimeError):
    """A caller asked for an allocation the cluster state cannot hold."""
