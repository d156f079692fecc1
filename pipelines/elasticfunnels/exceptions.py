"""Errors a sync can end with, each mapped to one exit code of `efw sync`.

Messages name the value, the URL path or the setting to change. They never
carry the access key or a customer's email: both may end up in logs, dlt's
traces and scheduler mail.
"""

from __future__ import annotations


class EfwError(Exception):
    """Base class of every error efw raises on purpose."""

    exit_code = 1


class ConfigurationError(EfwError):
    """A setting is missing or refused: the user must change configuration."""

    exit_code = 2


class AuthError(ConfigurationError):
    """The API refused the key, the brand or the module permission (401, 403)."""


class RequestRejected(ConfigurationError):
    """The API refused a parameter (422); the message names the field."""


class ApiError(EfwError):
    """The API kept failing (5xx, 429, timeouts) past the retry budget, or
    answered something that is not the documented shape."""

    exit_code = 3


class UnreadableAnswer(ApiError):
    """An answer that stayed unreadable JSON however often it was asked for;
    for one customer's details, the sync quarantines it and goes on."""


class ResultWindowExceeded(ApiError):
    """A scan needs more results than the API serves for one query."""


class WarehouseLocked(EfwError):
    """Another process holds the warehouse (another sync, or a reader)."""

    exit_code = 4


class PendingLoadFailed(EfwError):
    """What an earlier run extracted cannot be loaded, and every run loads it
    first: the message says how to drop it."""
