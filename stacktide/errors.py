"""The one root exception of stacktide, and the conditions callers act on.

Errors carry data, not only prose, so that a command can print them, a test can
assert on them and a service can count them by kind.
"""

from __future__ import annotations


class StacktideError(Exception):
    """Root of every error stacktide raises on purpose."""


class ConfigError(StacktideError):
    """A configuration value is missing or not what was expected.

    Names the file, the key (dotted path) and what was expected, so that an
    operator can fix the line without reading code.
    """

    def __init__(self, file: str, key: str, expected: str, got: object = None) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        self.got = got
        shown = "" if got is None else f", got {got!r}"
        super().__init__(f"{file}: {key}: expected {expected}{shown}")


class ServiceError(StacktideError):
    """A local service could not be installed, started, reached or stopped."""


class CatalogError(StacktideError):
    """The Iceberg catalog's database could not be reached or logged in to.

    The message names the catalog URI and what its database answered; never the password.
    """
